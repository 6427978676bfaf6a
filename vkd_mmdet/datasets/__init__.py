from .unlabelled_images import UnlabelledImages

__all__ = ['UnlabelledImages']
