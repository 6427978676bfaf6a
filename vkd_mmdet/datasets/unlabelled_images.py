"""Images without labels, for distillation only: a folder of raw frames or a COCO json
that lists images and no boxes.

Each sample comes out of the training pipeline like a labelled one (the same
``train_pipeline`` works: ``LoadAnnotations`` finds no instances and loads empty
boxes) and is marked ``unlabelled=True`` in its data sample's metainfo. The mark is
what :class:`~vkd_mmdet.models.VkDDistiller` reads: a marked image feeds every
distillation term and no detection loss, while an image of a labelled set that has
no boxes stays a negative example with its detection loss. Mix it with the labelled
set through mmdet's ``ConcatDataset`` and ``GroupMultiSourceSampler`` (its
``source_ratio`` sets each batch's labelled share): see docs/unlabelled.md.
"""
import json
import os
import os.path as osp
from typing import List

from PIL import Image

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS

from ..errors import ConfigError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')


@DATASETS.register_module()
class UnlabelledImages(CocoDataset):
    """Images with no labels, each marked ``unlabelled`` for the distiller.

    Args:
        ann_file: a COCO json listing the images (``images`` with ``file_name``,
            ``width``, ``height``; their ``id`` is not read, samples are numbered by
            position; its ``annotations``, if any, are not read),
            or ``''`` (default) for every image file in ``data_prefix['img']``
            (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``, ``.webp``, ``.tif``; sorted by
            name; sizes read from the file headers).
        metainfo: give the labelled set's (``dict(classes=...)``): mmdet's
            ``ConcatDataset`` joins only sets with equal metainfo.
        Other arguments as ``CocoDataset`` (``data_root``, ``data_prefix``,
        ``pipeline``, ...). Nothing is filtered: ``filter_cfg`` is ignored.

    Raises:
        FileNotFoundError: the folder or json does not exist, or holds no image.
    """

    def load_data_list(self) -> List[dict]:
        images = self._images_from_json() if self.ann_file else self._images_from_folder()
        if not images:
            where = self.ann_file or self.data_prefix.get('img', '')
            raise FileNotFoundError(f'UnlabelledImages: {where} lists no image')
        return [dict(img_path=path, img_id=img_id, width=width, height=height,
                     instances=[], unlabelled=True)
                for img_id, (path, width, height) in enumerate(images)]

    def _images_from_json(self) -> List[tuple]:
        if not osp.isfile(self.ann_file):
            raise FileNotFoundError(f'UnlabelledImages: ann_file {self.ann_file} does not '
                                    f'exist')
        with open(self.ann_file) as f:
            coco = json.load(f)
        folder = self.data_prefix.get('img', '')
        try:
            return [(osp.join(folder, img['file_name']), img['width'], img['height'])
                    for img in coco['images']]
        except (KeyError, TypeError) as exc:
            raise ConfigError(f'UnlabelledImages: {self.ann_file} is not a COCO image list: '
                              f"each entry of 'images' needs file_name, width and height "
                              f'({type(exc).__name__}: {exc})') from None

    def _images_from_folder(self) -> List[tuple]:
        folder = self.data_prefix.get('img', '')
        if not osp.isdir(folder):
            raise FileNotFoundError(f'UnlabelledImages: image folder {folder!r} does not '
                                    f'exist (data_root + data_prefix.img)')
        images = []
        for name in sorted(os.listdir(folder)):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                path = osp.join(folder, name)
                with Image.open(path) as img:  # (reads the header only)
                    images.append((path, *img.size))
        return images

    def filter_data(self) -> List[dict]:
        return self.data_list  # no boxes to filter by: every image is kept

    def prepare_data(self, idx: int):
        data = super().prepare_data(idx)
        if data is not None:  # (the mark is set here, whatever the pipeline packs)
            data['data_samples'].set_metainfo(dict(unlabelled=True))
        return data
