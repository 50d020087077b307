"""Which devices a rollout runs on, and what the fleet checks say of each.

The devices are those their agents published at the match's site (Device rows, as
GET /api/v1/devices lists them), narrowed by agent, profile and names or shell-style
patterns, in the order a rollout starts them: by device name, then agent. Each is
checked as a task of the rollout's op and params on it would be at create
(fleet_checks): refused with the reason, or taken with warnings.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from sqlmodel import Session

from tme.controller.services import fleet_checks
from tme.controller.services.fleet import list_devices
from tme.errors import ValidationError
from tme.fleet_schemas import DevicePublic
from tme.names import did_you_mean
from tme.rollout_schemas import MatchedDevice, RolloutCreate, RolloutMatch, window_size
from tme.rollout_schemas import RolloutPreview as RolloutPreview
from tme.schemas import Target

INVALID = "invalid request: "  # how the API's validation errors begin
SHOWN = 10  # refused devices named in a 422's message; its details list them all
# Devices one rollout runs on at most: each is a task made, checked and stored in the
# create's one transaction (a larger fleet takes several rollouts, by agent or pattern).
MAX_DEVICES = 1000


def matched_devices(session: Session, match: RolloutMatch) -> list[DevicePublic]:
    """The published devices `match` names, by device name then agent; a 422 when none
    is, or when one of its names or patterns matches no device of the rest of the match
    (a typo would otherwise leave a machine out unseen)."""
    published = list_devices(session, site=match.site, agent=match.agent)
    if match.profile is not None:
        published = [d for d in published if d.profile == match.profile]
    found = published
    if match.devices is not None:
        found = [d for d in published if any(fnmatchcase(d.name, p) for p in match.devices)]
        names = sorted({d.name for d in published})
        for index, pattern in enumerate(match.devices):
            if not any(fnmatchcase(name, pattern) for name in names):
                hint = did_you_mean(pattern, names)
                _refuse(
                    f"match.devices.{index}", f"{pattern!r} matches no device{_of(match)}{hint}"
                )
    if not found:
        _refuse("match", f"no device{_of(match)} matches: a rollout needs at least one")
    if len(found) > MAX_DEVICES:
        _refuse(
            "match",
            f"{len(found)} devices{_of(match)} match: a rollout runs on at most"
            f" {MAX_DEVICES}; narrow the match (agent, profile, devices)",
        )
    return sorted(found, key=lambda d: (d.name, d.agent))


def _of(match: RolloutMatch) -> str:
    said = f" at site {match.site!r}"
    if match.agent is not None:
        said += f" of agent {match.agent!r}"
    if match.profile is not None:
        said += f" with profile {match.profile!r}"
    return said + " (as their agents published them)"


def _refuse(field: str, message: str) -> None:
    raise ValidationError(
        f"{INVALID}{field}: {message}",
        field_errors=[{"field": field, "message": message, "type": "value_error"}],
    )


def check_devices(session: Session, data: RolloutCreate) -> list[MatchedDevice]:
    """The matched devices, each with what the fleet checks say of the op on it."""
    devices = matched_devices(session, data.match)
    targets = [Target(site=d.site, agent=d.agent, device=d.name) for d in devices]
    view = fleet_checks.load_view(session, [(data.op, t) for t in targets])
    checked = []
    for device, target in zip(devices, targets, strict=True):
        entry = MatchedDevice(agent=device.agent, device=device.name, profile=device.profile)
        try:
            entry.warnings = fleet_checks.check_task(view, data.op, target, data.params)
        except ValidationError as exc:
            entry.refused = exc.message.removeprefix(INVALID)
        checked.append(entry)
    return checked


def preview(session: Session, data: RolloutCreate) -> RolloutPreview:
    """What creating `data` would do, storing nothing (a 422 as the create's for an empty
    match or a name matching nothing; refused devices are listed, not refused)."""
    checked = check_devices(session, data)
    taken = [d for d in checked if d.refused is None]
    return RolloutPreview(
        devices=taken,
        refused=[d for d in checked if d.refused is not None],
        window=window_size(data.window, len(taken)) if taken else 0,
    )


def devices_to_run(session: Session, data: RolloutCreate) -> RolloutPreview:
    """The devices a create runs on: a 422 listing the refused ones unless `skip_refused`
    leaves them out (the answer lists them), and a 422 when none is left."""
    plan = preview(session, data)
    if plan.refused and (not data.skip_refused or not plan.devices):
        named = "; ".join(f"{d.device} ({d.agent}): {d.refused}" for d in plan.refused[:SHOWN])
        more = f"; and {len(plan.refused) - SHOWN} more" if len(plan.refused) > SHOWN else ""
        how = (
            "every matched device is refused"
            if not plan.devices
            else "pass skip_refused (tme rollout create --skip-refused) to leave them out"
        )
        count = len(plan.refused)
        said = "1 matched device is" if count == 1 else f"{count} matched devices are"
        message = f"{said} refused ({how}): {named}{more}"
        raise ValidationError(
            f"{INVALID}match: {message}",
            field_errors=[
                {
                    "field": "match",
                    "message": f"device {d.device} of agent {d.agent}: {d.refused}",
                    "type": "value_error",
                }
                for d in plan.refused
            ],
        )
    return plan
