#include "mpishim.h"
