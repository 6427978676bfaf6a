from .feature_norm import NORMS, normalize
from .input_scaling import RescaleBatch
from .orthogonal_projector import OrthogonalProjector, QROrthogonal
from .prediction_mimic_loss import PredictionMimicLoss
from .vkd_distiller import VkDDistiller
from .vkd_loss import VkDLoss

__all__ = ['NORMS', 'normalize', 'OrthogonalProjector', 'PredictionMimicLoss', 'QROrthogonal',
           'RescaleBatch', 'VkDDistiller', 'VkDLoss']
