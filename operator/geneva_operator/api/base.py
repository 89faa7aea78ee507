"""What every model of the GenevaBackfill API shares: camelCase on the wire, strict keys, and
cross-field rules declared once for both the API server (CEL) and pydantic."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel

# Kubernetes resource.Quantity, as the API server accepts it.
QUANTITY_PATTERN = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


@dataclass(frozen=True)
class Rule:
    """One cross-field rule, defined once and enforced twice: by the API server as a CEL
    `x-kubernetes-validations` entry on the model's schema, and by pydantic through `check`,
    so manifests validated without an API server (`geneva-backfill validate`, the operator
    reading an object) meet the same rules. `check` is None for transition rules (they need
    `oldSelf`, which only the API server has). `cel` sees the object after the API server
    applied the schema defaults, as `check` sees the model after pydantic applied them."""

    cel: str
    message: str
    check: Optional[Callable[[Any], bool]] = None
    field_path: Optional[str] = None  # e.g. ".replicas": where `kubectl` reports the error

    def to_cel(self) -> dict[str, str]:
        rule = {"rule": self.cel, "message": self.message}
        if self.field_path:
            rule["fieldPath"] = self.field_path
        return rule


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )

    # Cross-field rules of this model; see Rule.
    cel_rules: ClassVar[tuple[Rule, ...]] = ()

    def to_wire(self) -> dict[str, Any]:
        """camelCase dict without unset optional fields, as it would sit in the resource."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = handler(core_schema)
        if cls.cel_rules:
            handler.resolve_ref_schema(schema)["x-kubernetes-validations"] = [r.to_cel() for r in cls.cel_rules]
        return schema

    @model_validator(mode="after")
    def _check_rules(self) -> "_Model":
        broken = [r.message for r in type(self).cel_rules if r.check is not None and not r.check(self)]
        if broken:
            raise ValueError("; ".join(broken))
        return self
