# Host (Linux) build: the core as an ordinary process. HOST_CC=clang works too.
HOST_CC ?= gcc
CC := $(HOST_CC)
SIZE := size
NM := nm
OBJCOPY := objcopy
ARCH_CFLAGS :=
ARCH_LDFLAGS :=
ARCH_LDLIBS := -lm
BOARD_SRC_DIRS := boards/host
BOARD_DEFINES := -DRNNPOOL_BOARD_HOST=1
BOARD_IS_ARM := 0
