"""vkd_mmdet: VkD feature distillation as an MMDetection 3.x plugin."""
__version__ = '0.1.0'
