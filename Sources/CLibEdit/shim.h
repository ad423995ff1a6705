// libedit's readline-compatible API plus its native history/editline API.
#include <stdio.h>
#include <histedit.h>
