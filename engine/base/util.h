/* util.h - the base layer in one include, for the modules that use most of it:
 * errors (error.h), memory and containers (mem.h), parsing (parse.h), files (files.h),
 * validation problems as one error (problems.h) and facts about the machine (sysinfo.h). */
#ifndef DS4_UTIL_H
#define DS4_UTIL_H

#include "error.h"
#include "files.h"
#include "mem.h"
#include "parse.h"
#include "problems.h"
#include "sysinfo.h"

#endif
