"""unlearnkit: the library behind the machine-unlearning book.

One import in every chapter: ``import unlearnkit as uk``.
"""
__version__ = "0.2.0"

from . import attacks, bench, claims, validate, data, fisher, formats, methods, metrics, models, plots, profiles, tasks, training, zoo  # noqa: E402
from .bench import Spread, format_table, run_methods, run_spread, timed  # noqa: E402
from .claims import Word, against_paper, ordering, verdict  # noqa: E402
from .data import (DATASETS, Dataset, DatasetUnavailableError, load_dataset, make_toy,  # noqa: E402
                   stratified_indices)
from .fisher import diag_fisher, mas_importance  # noqa: E402
from .methods import get_method, register, runtime  # noqa: E402
from .metrics import (activation_distance, bn_stat_change, entropy, evaluate, js_divergence, linear_cka, mia_entropy,  # noqa: E402
                      mia_loss_auc, output_entropy, prediction_confusion, relearn_time, unlearn_score,
                      weight_distance)
from .models import MODELS, build_model, check_finite, clone, rebuild  # noqa: E402
from .profiles import (CheckFailed, GPUWarning, Profile, active, check, config, get_device, profile,  # noqa: E402
                       set_seed, settings_table)
from .tasks import (ACCESS, AccessError, Task, TaskView, forget_class, forget_classes,  # noqa: E402
                    forget_instances, forget_random, forget_subclass)
from .training import DivergedError, History, accuracy, augment, batches, descend, fit, predict  # noqa: E402
from .zoo import CorruptCheckpointWarning, cached, train_or_load  # noqa: E402
from . import poison, theory  # noqa: E402,F401
