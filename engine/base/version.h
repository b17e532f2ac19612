/* version.h - what this build of ds4 is: the git commit it was built from and the
 * backends compiled in, for --version and for the git_sha column of benchmarks. */
#ifndef DS4_VERSION_H
#define DS4_VERSION_H

const char *ds4_git_sha(void);  /* short commit id, "unknown" outside a git checkout */

#endif
