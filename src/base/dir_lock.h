// An exclusive lock on a folder that one process writes (a training run's --out), so that a second
// writer is refused, naming the holder, instead of both saying "saved" and the last one winning.
#pragma once
#include <string>

namespace moe {

class DirLock {
 public:
  // Creates `dir` if needed and takes an flock on `dir`/train.lock, writing this process's id into
  // it. Throws InputError naming `flag`, the folder and the holder's pid when another process holds
  // it. The lock ends with this object or the process (the kernel drops it even after a crash).
  DirLock(const std::string& dir, const std::string& flag);
  ~DirLock();
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace moe
