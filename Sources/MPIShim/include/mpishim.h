// Accessors for MPICH macros that Swift cannot import (casts of integer handles and pointer sentinels).
#pragma once
#include <mpi.h>
static inline MPI_Op shim_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op shim_mpi_max(void) { return MPI_MAX; }
static inline void *shim_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Status *shim_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Errhandler shim_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
