# NUCLEO-F439ZI: STM32F439ZI, 2 MB flash, 192 KB contiguous SRAM (+64 KB CCM, unused), 168 MHz.
CROSS ?= arm-none-eabi-
CC := $(CROSS)gcc
SIZE := $(CROSS)size
NM := $(CROSS)nm
OBJCOPY := $(CROSS)objcopy
# Soft-float ABI on purpose (see boards/qemu/board.mk); the FPU stays off.
ARCH_CFLAGS := -mcpu=cortex-m4 -mthumb -mfloat-abi=soft
ARCH_LDFLAGS := -nostartfiles --specs=nano.specs -Lboards/cortex-m4
ARCH_LDLIBS := -lc -lgcc
BOARD_SRC_DIRS := boards/nucleo-f439zi boards/cortex-m4
BOARD_DEFINES := -DRNNPOOL_BOARD_NUCLEO_F439ZI=1 -DRNNPOOL_ARM_DSP=1
LDSCRIPT := boards/nucleo-f439zi/link.ld
LDSCRIPT_DEPS := boards/cortex-m4/sections.ld
BOARD_RAM_BYTES := 196608
BOARD_FLASH_BYTES := 2097152
BOARD_IS_ARM := 1
