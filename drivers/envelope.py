"""The safety envelope: which writes and commands a device profile allows.

Every refusal is an `EnvelopeViolation` whose `details["reason"]` is one of
unknown_point, read_only, wrong_type, not_finite, below_min, above_max,
out_of_type_range, unknown_command, wrong_arg_count, not_allowed, too_long; and, for
what the agent reads from the device just before a write (tme.agents.interlocks),
step_too_large and interlock; and, for when the agent last changed the point
(tme.agents.pacing), too_soon.
"""

from __future__ import annotations

import math
import re
import string
from typing import TYPE_CHECKING, Any

from tme.errors import EnvelopeViolation

if TYPE_CHECKING:
    from tme.drivers.profile import ArgSpec, DeviceProfile, PointSpec


FLOAT32_EPSILON = 2.0**-23  # float32's relative precision (one unit in the last place)

# What a text argument with neither `choices` nor `pattern` may hold: characters that
# cannot end a command or start another one on a line instrument. SCPI alone gives
# ";" (next command), ":" (back to the root), "*" (common commands such as *RST),
# "," (one more parameter), quotes and "#" (strings and block data), "?" (a query);
# other dialects use others again, so only these are allowed, none of them special.
FREE_TEXT_CHARACTERS = frozenset(string.ascii_letters + string.digits + " _.+-")
FREE_TEXT_SHOWN = "letters, digits, space and _ . + -"
# Free text is at most this long: a line instrument's input buffer may be small, and
# one that overflows may drop the start of a line and run the rest as a command.
# Longer than a display label or a range name; a `pattern` may allow more.
FREE_TEXT_MAX_CHARS = 64


def _refuse(reason: str, message: str, **details: Any) -> EnvelopeViolation:
    return EnvelopeViolation(message, details={"reason": reason, **details})


def _number(value: Any, what: str) -> float:
    """Accept int and float (never bool or text): a wrong type must not become a value."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _refuse(
            "wrong_type", f"{what} needs a number, got {type(value).__name__}", value=repr(value)
        )
    try:
        number = float(value)  # an int beyond float range (10**400) raises OverflowError
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        # str() of a huge int is refused by Python itself past 4300 digits: name its size
        size = f"an integer of {value.bit_length()} bits" if isinstance(value, int) else ""
        text = size or str(value)
        raise _refuse("not_finite", f"{what} must be a finite number, got {text}", value=text)
    return number


def _in_range(
    value: float, low: float | None, high: float | None, what: str, shown: str = ""
) -> None:
    shown = shown or str(value)
    if low is not None and value < low:
        raise _refuse(
            "below_min",
            f"{what}: {shown} is below the minimum {low}",
            value=value,
            min=low,
            max=high,
        )
    if high is not None and value > high:
        raise _refuse(
            "above_max",
            f"{what}: {shown} is above the maximum {high}",
            value=value,
            min=low,
            max=high,
        )


def check_point_limits(spec: PointSpec, name: str, value: Any) -> float | bool:
    """The checks of a write that need neither the point's address nor its encoding:
    access, type (true/false or a finite number) and the profile's min and max. Return
    the value (a float for a number), or raise naming the reason. The controller applies
    these to a task against what the agent published (tme.controller.services.fleet_checks)."""
    what = f"point {name!r}"
    if spec.access != "rw":
        raise _refuse("read_only", f"{what} is read-only", point=name)
    if spec.type == "bool":
        if isinstance(value, bool):
            return value
        raise _refuse(
            "wrong_type",
            f"{what} needs true or false, got {type(value).__name__}",
            point=name,
            value=repr(value),
        )
    number = _number(value, what)
    _in_range(number, spec.min, spec.max, what)
    return number


def check_point_write(profile: DeviceProfile, name: str, value: Any) -> float | int | bool:
    """Return the engineering value the device will receive, or raise naming the reason."""
    from tme.drivers.codec import wire_value  # pymodbus: loaded only when a point is written
    from tme.drivers.profile import RAW_LIMITS

    spec: PointSpec = profile.point(name)
    number = check_point_limits(spec, name, value)
    if isinstance(number, bool):
        return number
    what = f"point {name!r}"
    raw = number / spec.scale  # inf when a huge value meets a small scale: no type holds it
    low, high = RAW_LIMITS[spec.type]
    if spec.type != "float32" and math.isfinite(raw):
        raw = round(raw)
    if not low <= raw <= high:
        raise _refuse(
            "out_of_type_range",
            f"{what}: {value} does not fit a {spec.type}",
            point=name,
            value=number,
        )
    if spec.type == "float32":
        # float32 keeps ~7 digits, far below any limit's meaning: the value is checked as
        # given, unless a float32 cannot carry it (too small: it arrives as 0 or as a
        # value with a few digits left, perhaps below the minimum)
        arrives = wire_value(spec, number)
        if not math.isclose(arrives, number, rel_tol=FLOAT32_EPSILON):
            raise _refuse(
                "out_of_type_range",
                f"{what}: {value} does not fit a float32 (it would arrive as {arrives})",
                point=name,
                value=number,
            )
        return number
    # the limits hold for what the device receives: the value rounded to a whole raw step
    sent = wire_value(spec, number)
    _in_range(sent, spec.min, spec.max, what, shown=f"{number} (sent as {sent}, a whole raw step)")
    return sent


def check_step(spec: PointSpec, name: str, value: float | int | bool, current: Any) -> None:
    """Refuse a write that would move the point by more than its max_step from `current`,
    the value the device holds (read just before, under the bus lock)."""
    if spec.max_step is None or isinstance(value, bool) or isinstance(current, bool):
        return
    if not isinstance(current, int | float) or not math.isfinite(current):
        raise _refuse(
            "step_too_large",
            f"point {name!r}: its present value ({current!r}) is not a number, so a step "
            f"of at most {spec.max_step:g} cannot be checked",
            point=name,
            value=value,
            current=repr(current),
            max_step=spec.max_step,
        )
    step = abs(value - current)
    if step > spec.max_step * (1 + FLOAT32_EPSILON):  # a float32 read-back may be an ulp off
        unit = f" {spec.unit}" if spec.unit else ""
        raise _refuse(
            "step_too_large",
            f"point {name!r}: from {current:g} to {value:g}{unit} is a step of {step:g}, above"
            f" its max_step {spec.max_step:g} (move it in smaller steps)",
            point=name,
            value=value,
            current=current,
            max_step=spec.max_step,
        )


def check_interval(spec: PointSpec, name: str, since_s: float | None) -> None:
    """Refuse a change of the point `since_s` seconds after its agent last changed it,
    when that is less than its min_interval_s (None: no change known, so any is allowed)."""
    interval = spec.min_interval_s
    if interval is None or since_s is None or since_s >= interval:
        return
    left = interval - since_s
    raise _refuse(
        "too_soon",
        f"point {name!r} was last changed {_seconds(since_s, up=False)} s ago; its"
        f" min_interval_s is {interval:g} (next change allowed in {_seconds(left, up=True)} s)",
        point=name,
        since_s=since_s,
        min_interval_s=interval,
        retry_after_s=left,
    )


def _seconds(value: float, *, up: bool) -> str:
    """Seconds as an operator reads them: whole from 10 s, else to a tenth. The time
    since is rounded down and the time left up: together they make the interval, and
    the next change is never said to be allowed before it is."""
    digits = 0 if value >= 10 else 1
    scaled = round(value * 10**digits, 6)  # 2.3 * 10 is 22.999999999999996
    rounded = (math.ceil(scaled) if up else math.floor(scaled)) / 10**digits
    return f"{rounded:.{digits}f}"


def _check_text(spec: ArgSpec, value: Any, what: str) -> str:
    """Text that holds one argument and nothing more: one of the profile's choices, a
    match of its pattern, or else free text of FREE_TEXT_CHARACTERS only."""
    if not isinstance(value, str):
        raise _refuse("wrong_type", f"{what} needs text", value=repr(value))
    if any(c in value for c in "\r\n"):  # whatever the profile allows
        raise _refuse("not_allowed", f"{what} must not contain line breaks", value=repr(value))
    if spec.choices is not None:
        if value not in spec.choices:
            raise _refuse(
                "not_allowed", f"{what}: {value!r} is not one of {spec.choices}", value=value
            )
        return value
    if spec.pattern is not None:
        if re.fullmatch(spec.pattern, value) is None:
            raise _refuse(
                "not_allowed",
                f"{what}: {value!r} does not match the pattern {spec.pattern!r}",
                value=value,
                pattern=spec.pattern,
            )
        return value
    bad = next((c for c in value if c not in FREE_TEXT_CHARACTERS), None)
    if bad is not None:
        raise _refuse(
            "not_allowed",
            f"{what}: character {bad!r} is not allowed in free text (only "
            f"{FREE_TEXT_SHOWN}; the profile may give the argument choices or a pattern)",
            value=value,
            character=bad,
        )
    if len(value) > FREE_TEXT_MAX_CHARS:
        raise _refuse(
            "too_long",
            f"{what}: free text is at most {FREE_TEXT_MAX_CHARS} characters, got {len(value)} "
            "(the profile may give the argument a pattern)",
            value=value[:FREE_TEXT_MAX_CHARS] + "...",
            length=len(value),
        )
    return value


def _check_arg(spec: ArgSpec, value: Any, what: str) -> Any:
    if spec.type == "str":
        return _check_text(spec, value, what)
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise _refuse("wrong_type", f"{what} needs true or false", value=repr(value))
        return value
    number = _number(value, what)
    if spec.type == "int" and not number.is_integer():
        raise _refuse("wrong_type", f"{what} needs a whole number", value=number)
    _in_range(number, spec.min, spec.max, what)
    if spec.type == "int":
        # an int is sent as given: through a float, 2**53 + 1 would become 2**53
        return value if isinstance(value, int) else int(number)
    return number


def check_command_args(profile: DeviceProfile, name: str, args: list[Any]) -> list[Any]:
    """Return the validated arguments of serial command `name`, or raise."""
    command = profile.commands.get(name)
    if command is None:
        raise _refuse(
            "unknown_command",
            f"unknown command {name!r} on device profile {profile.name!r}",
            command=name,
        )
    if len(args) != len(command.args):
        raise _refuse(
            "wrong_arg_count",
            f"command {name!r} takes {len(command.args)} argument(s), got {len(args)}",
            command=name,
        )
    checked = []
    for i, (spec, value) in enumerate(zip(command.args, args, strict=True)):
        try:
            checked.append(_check_arg(spec, value, f"command {name!r} argument {i}"))
        except EnvelopeViolation as exc:
            exc.details = {**exc.details, "arg": i}  # which one, for a field name
            raise
    return checked
