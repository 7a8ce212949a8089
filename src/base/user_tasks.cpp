#include "base/user_tasks.h"

#include <dirent.h>

#include <cctype>
#include <fstream>
#include <string>

namespace moe {

int64_t tasks_of_user(uid_t uid) {
  DIR* proc = ::opendir("/proc");
  if (!proc) return -1;
  int64_t tasks = 0;
  while (const dirent* e = ::readdir(proc)) {
    if (!std::isdigit(static_cast<unsigned char>(e->d_name[0]))) continue;
    // "Uid:\t<real>\t<effective>..." and "Threads:\t<n>"; a process that ends meanwhile is skipped.
    std::ifstream status(std::string("/proc/") + e->d_name + "/status");
    std::string key;
    long long real_uid = -1, threads = 0;
    while (status >> key) {
      if (key == "Uid:") status >> real_uid;
      else if (key == "Threads:") status >> threads;
      status.ignore(1 << 20, '\n');
    }
    if (real_uid == (long long)uid) tasks += threads;
  }
  ::closedir(proc);
  return tasks;
}

}  // namespace moe
