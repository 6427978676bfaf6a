"""vkd-mmdet: VkD feature distillation for MMDetection 3.x.

The pinned stack lives in requirements/stack.txt, shared with tools/setup_env.sh.
torch and mmcv are not install requirements: install them first (the setup script
does, building mmcv 2.1.0 with its ops), or bring your own CUDA builds.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent


def read_stack(tag=None):
    """Requirement lines of requirements/stack.txt carrying `tag` (None: untagged)."""
    reqs = []
    for line in (ROOT / 'requirements' / 'stack.txt').read_text().splitlines():
        spec, _, comment = line.partition('#')
        spec = spec.strip()
        if not spec:
            continue
        tags = set(re.findall(r'\[([\w-]+)\]', comment))
        if (tag is None and not tags) or tag in tags:
            reqs.append(spec)
    return reqs


setup(
    name='vkd-mmdet',
    version='0.1.0',
    description='VkD (orthogonal-projection knowledge distillation) for MMDetection 3.x',
    long_description=(ROOT / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.8',
    packages=find_packages(include=['vkd_mmdet', 'vkd_mmdet.*']),
    # The plugin's configs ship inside the package (vkd_mmdet/configs/.mim/configs/vkd
    # links to configs/) so `_base_ = 'vkd_mmdet::vkd/...'` resolves like `mmdet::...`.
    package_data={'vkd_mmdet.configs': ['.mim/model-index.yml', '.mim/configs/vkd/*.py']},
    include_package_data=True,
    install_requires=read_stack(),
    extras_require={'tests': read_stack('tests')},
    zip_safe=False,
)
