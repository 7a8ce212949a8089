// How many tasks (processes and threads) a user already runs: RLIMIT_NPROC (ulimit -u) counts every
// thread of every process of the real user, not only ours, so a check of the threads we are about to
// start against that limit must add what the user already holds.
#pragma once
#include <sys/types.h>

#include <cstdint>

namespace moe {

// The threads of every process under /proc whose real user id is `uid` (those this process can see:
// tasks in other PID namespaces are not counted). -1 when /proc cannot be read.
int64_t tasks_of_user(uid_t uid);

}  // namespace moe
