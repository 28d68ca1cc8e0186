// Internal: record a failure's message for last_error_message() and return its status.
#pragma once

#include "contrastive/export.h"
#include "contrastive/status.hpp"

namespace contrastive::detail {

/// printf-style message; keeps it in this thread's last-error slot and returns `status`.
CONTRASTIVE_API Status fail(Status status, const char* format, ...) noexcept
    __attribute__((format(printf, 2, 3)));

}  // namespace contrastive::detail
