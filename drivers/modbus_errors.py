"""Where pymodbus failures become `DriverError`: once, here, and nowhere further in."""

from __future__ import annotations

from typing import Any

from pymodbus.exceptions import ModbusException, ModbusIOException

from tme.errors import DriverError

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge (still processing)",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
# Worth another try later: the device is busy or failing for now, or a gateway lost its path.
# Codes 1-3 say the request itself is wrong; repeating it cannot help.
RETRYABLE_CODES = {4, 5, 6, 10, 11}


def from_exception_response(response: Any, what: str) -> DriverError:
    code = int(response.exception_code)
    name = EXCEPTION_NAMES.get(code, "unknown exception")
    return DriverError(
        f"{what}: device answered Modbus exception {code} ({name})",
        modbus_exception=code,
        retryable=code in RETRYABLE_CODES,
        details={"exception_code": code},
    )


# How pymodbus 3.16 says a request got no answer within its timeout (a ModbusIOException
# "No response received after 0 retries, continue with next request", or "... CLOSING
# CONNECTION"): its own retry count (always 0: the driver repeats reads itself) is no
# news, and "continue with next request" is advice to pymodbus's caller, not the operator.
NO_RESPONSE = "No response received"


def from_library_error(exc: BaseException, what: str, timeout_s: float) -> DriverError:
    """I/O failures, timeouts and lost connections: the request may not have arrived."""
    if isinstance(exc, TimeoutError) or (
        isinstance(exc, ModbusIOException) and NO_RESPONSE in str(exc)
    ):
        text = f"no answer within {timeout_s:g} s"
    elif isinstance(exc, ModbusException):
        text = str(exc).replace("Modbus Error: ", "")
    else:
        text = f"{type(exc).__name__}: {exc}"
    return DriverError(f"{what}: {text}", retryable=True, details={"io_error": text})
