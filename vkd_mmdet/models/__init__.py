from .feature_norm import NORMS, normalize
from .input_scaling import RescaleBatch
from .orthogonal_projector import OrthogonalProjector, QROrthogonal
from .vkd_distiller import VkDDistiller
from .vkd_loss import VkDLoss

__all__ = ['NORMS', 'normalize', 'OrthogonalProjector', 'QROrthogonal', 'RescaleBatch',
           'VkDDistiller', 'VkDLoss']
