// A TCP port for a server this process is about to start on every interface (rank 0's store in
// `train --nproc` and its tests), chosen so that nothing else is handed it in between.
#pragma once

namespace moe {

// A TCP port that nothing listens on now, below the kernel's ephemeral range (ip_local_port_range):
// the kernel never hands such a port to another socket's connect() or bind(0), so only a program that
// binds that very number could take it before the caller listens. A kernel-picked port was taken in
// between by unrelated outgoing connections (seen here: "Address already in use" under parallel load).
// Tries random ports from 10000 up to the range's start; throws InputError when none is free or no
// socket can be opened.
int free_port_below_ephemeral_range();

}  // namespace moe
