"""The plugin's configs, shipped inside the package for inheritance.

``_base_ = 'vkd_mmdet::vkd/vkd_retinanet_r50.py'`` resolves to
``configs/vkd_retinanet_r50.py`` of this project (``.mim/configs/vkd`` links
there), in the process that has imported ``vkd_mmdet`` (e.g. ``tools/train.py``).
"""
