"""The GenevaBackfill API (pydantic models) and the Arrow type-string grammar."""
from .arrow_types import ArrowType, ArrowTypeError, parse_arrow_type
from .models import *  # noqa: F401,F403
from .models import BackfillSpec, BackfillStatus
