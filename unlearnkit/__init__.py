"""unlearnkit: the library behind the machine-unlearning book.

One import in every chapter: ``import unlearnkit as uk``.
"""
__version__ = "0.1.0"

from . import attacks, bench, data, fisher, methods, metrics, models, plots, profiles, tasks, training, zoo  # noqa: E402
from .bench import run_methods, timed  # noqa: E402
from .data import (DATASETS, Dataset, DatasetUnavailableError, augment, batches, load_dataset,  # noqa: E402
                   make_toy)
from .fisher import diag_fisher, mas_importance  # noqa: E402
from .methods import get_method, register, runtime  # noqa: E402
from .metrics import (activation_distance, entropy, evaluate, js_divergence, linear_cka, mia_entropy,  # noqa: E402
                      mia_loss_auc, output_entropy, prediction_confusion, relearn_time, unlearn_score,
                      weight_distance)
from .models import MODELS, build_model, check_finite, clone, rebuild  # noqa: E402
from .profiles import GPUWarning, Profile, config, get_device, profile, set_seed, settings_table  # noqa: E402
from .tasks import (ACCESS, AccessError, Task, TaskView, forget_class, forget_classes,  # noqa: E402
                    forget_instances, forget_random, forget_subclass)
from .training import History, accuracy, fit, predict  # noqa: E402
from .zoo import CorruptCheckpointWarning, cached, train_or_load  # noqa: E402
