# qemu-system-arm -M netduinoplus2 (STM32F405: Cortex-M4, 1 MB flash, 128 KB SRAM; CCM unmapped).
CROSS ?= arm-none-eabi-
CC := $(CROSS)gcc
SIZE := $(CROSS)size
NM := $(CROSS)nm
OBJCOPY := $(CROSS)objcopy
# Soft-float ABI on purpose: inference is integer-only, and tools/size-report.sh rejects an image
# that pulls in the soft-float helpers, so a stray float is a build error rather than a slowdown.
ARCH_CFLAGS := -mcpu=cortex-m4 -mthumb -mfloat-abi=soft
ARCH_LDFLAGS := -nostartfiles --specs=nano.specs -Lboards/cortex-m4
ARCH_LDLIBS := -lc -lgcc
BOARD_SRC_DIRS := boards/qemu boards/cortex-m4
# QEMU 7.2's USART raises no TXE interrupt (and sends synchronously): polled TX, no TX ring.
BOARD_DEFINES := -DRNNPOOL_BOARD_QEMU=1 -DRNNPOOL_ARM_DSP=1 -DBOARD_UART_TX_BYTES=0
LDSCRIPT := boards/qemu/link.ld
LDSCRIPT_DEPS := boards/cortex-m4/sections.ld
BOARD_RAM_BYTES := 131072
BOARD_FLASH_BYTES := 1048576
BOARD_IS_ARM := 1
