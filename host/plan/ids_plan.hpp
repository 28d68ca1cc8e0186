// Internal: the checks of the ids options (include/contrastive/ids.hpp), no device needed.
#pragma once

#include "contrastive/export.h"
#include "contrastive/ids.hpp"

namespace contrastive::ids::detail {

/// The options alone and with the loss's symmetric flag; `loss` names the loss in the message.
/// The loss's params are checked by the caller.
CONTRASTIVE_API Status check_options(const char* loss, const IdOptions& options, bool symmetric);

}  // namespace contrastive::ids::detail
