/* version.c - see version.h. DS4_GIT_SHA comes from the Makefile. */
#include "version.h"

#ifndef DS4_GIT_SHA
#define DS4_GIT_SHA "unknown"
#endif

const char *ds4_git_sha(void) { return DS4_GIT_SHA; }
