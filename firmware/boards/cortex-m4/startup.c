/* Cortex-M4 reset, vector table, fault entry and the RAM/stack probes shared by the QEMU and
 * Nucleo boards. Written for the STM32F4 interrupt map (91 interrupts on the F439; the F405
 * that QEMU models has 82 and simply never raises the rest). */
#include "board.h"
#include "cortex-m4/cm4.h"
#include "cortex-m4/startup.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[];
extern void (*__preinit_array_start[])(void);
extern void (*__preinit_array_end[])(void);
extern void (*__init_array_start[])(void);
extern void (*__init_array_end[])(void);

int main(void);
void Reset_Handler(void);
void Default_Handler(void);
void cm4_fault_c(const uint32_t *frame, uint32_t ipsr);

/* Room between the painted region and Reset_Handler's own frame when painting at boot. */
#define STACK_PAINT_MARGIN 64u

static void paint_stack_below(uintptr_t limit)
{
    for (volatile uint32_t *p = _sstack; (uintptr_t)p < limit; p++) {
        *p = STACK_PAINT_WORD;
    }
}

void Reset_Handler(void)
{
    const uint32_t *src = _sidata;
    for (uint32_t *dst = _sdata; dst < _edata;) {
        *dst++ = *src++;
    }
    for (uint32_t *dst = _sbss; dst < _ebss;) {
        *dst++ = 0u;
    }
    paint_stack_below(current_sp() - STACK_PAINT_MARGIN);

    size_t n = (size_t)(__preinit_array_end - __preinit_array_start);
    for (size_t i = 0; i < n; i++) {
        __preinit_array_start[i]();
    }
    n = (size_t)(__init_array_end - __init_array_start);
    for (size_t i = 0; i < n; i++) {
        __init_array_start[i]();
    }

    int status = main();
    board_exit(status);
}

/* Every fault lands here. We run on MSP only, but check EXC_RETURN anyway so a future RTOS
 * thread on PSP still gets its own frame reported. */
__attribute__((naked)) void Default_Handler(void)
{
    __asm__ volatile("tst lr, #4\n\t"
                     "ite eq\n\t"
                     "mrseq r0, msp\n\t"
                     "mrsne r0, psp\n\t"
                     "mrs r1, ipsr\n\t"
                     "b cm4_fault_c\n\t");
}

void cm4_fault_c(const uint32_t *frame, uint32_t ipsr)
{
    board_fault(ipsr & 0x1FFu, frame);
}

void NMI_Handler(void) __attribute__((weak, alias("Default_Handler")));
void HardFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void MemManage_Handler(void) __attribute__((weak, alias("Default_Handler")));
void BusFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SVC_Handler(void) __attribute__((weak, alias("Default_Handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("Default_Handler")));
void PendSV_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SysTick_Handler(void) __attribute__((weak, alias("Default_Handler")));
void TIM2_IRQHandler(void) __attribute__((weak, alias("Default_Handler")));
void USART1_IRQHandler(void) __attribute__((weak, alias("Default_Handler")));
void USART3_IRQHandler(void) __attribute__((weak, alias("Default_Handler")));

typedef void (*handler_t)(void);

#define STM32F4_IRQS 91

struct vector_table {
    uint32_t *initial_sp;
    handler_t system[15];
    handler_t irq[STM32F4_IRQS];
};

#define D Default_Handler
#define X4(h) h, h, h, h
#define X8(h) X4(h), X4(h)
#define X16(h) X8(h), X8(h)
#define X32(h) X16(h), X16(h)

/* Only the interrupts some board uses are named; every other slot reports itself as an
 * unexpected exception through Default_Handler rather than jumping to address 0. */
#define IRQ_TABLE                                                                                  \
    {                                                                                              \
        X16(D), X8(D), X4(D), /* 0-27 */                                                           \
        TIM2_IRQHandler,      /* 28 */                                                             \
        X8(D),                /* 29-36 */                                                          \
        USART1_IRQHandler,    /* 37 */                                                             \
        D,                    /* 38 USART2 */                                                      \
        USART3_IRQHandler,    /* 39 */                                                             \
        X32(D), X16(D), D, D, D /* 40-90 */                                                        \
    }
/* A short list would silently leave trailing NULL slots; count it. */
_Static_assert(sizeof((handler_t[])IRQ_TABLE) == STM32F4_IRQS * sizeof(handler_t),
               "IRQ table must have exactly 91 entries");

__attribute__((section(".isr_vector"), used)) const struct vector_table vector_table = {
    .initial_sp = _estack,
    .system =
        {
            Reset_Handler,
            NMI_Handler,
            HardFault_Handler,
            MemManage_Handler,
            BusFault_Handler,
            UsageFault_Handler,
            NULL,
            NULL,
            NULL,
            NULL,
            SVC_Handler,
            DebugMon_Handler,
            NULL,
            PendSV_Handler,
            SysTick_Handler,
        },
    .irq = IRQ_TABLE,
};

void cm4_enable_fault_traps(void)
{
    /* A bootloader may have moved it; our table is the one linked at the start of flash. */
    SCB->VTOR = (uint32_t)(uintptr_t)&vector_table;
    /* Integer division by zero returns 0 silently on the M4 unless trapped: in fixed-point
     * code that is always a bug we want to see. */
    SCB->CCR |= SCB_CCR_DIV_0_TRP;
    SCB->SHCSR |= SCB_SHCSR_MEMFAULTENA | SCB_SHCSR_BUSFAULTENA | SCB_SHCSR_USGFAULTENA;
    dsb();
    isb();
}

/* There is no heap. newlib's snprintf links malloc in (it is never called for a fixed buffer),
 * and malloc needs _sbrk: this one always refuses, so a test may use snprintf while the
 * firmware image itself is still rejected by tools/size-report.sh if anything links malloc. */
void *_sbrk(ptrdiff_t increment);
void *_sbrk(ptrdiff_t increment)
{
    (void)increment;
    errno = ENOMEM;
    return (void *)-1;
}

/* ---- memory probes --------------------------------------------------------------------- */

uint32_t board_ram_bytes(void)
{
    return (uint32_t)((uintptr_t)_estack - (uintptr_t)__ram_start);
}

uint32_t board_static_ram_bytes(void)
{
    return (uint32_t)((uintptr_t)_sstack - (uintptr_t)__ram_start);
}

void board_stack_paint(void)
{
    /* Below our own frame only; an interrupt arriving meanwhile pushes its frame below SP,
     * which we may then paint over: it is dead by the time the loop gets there. */
    paint_stack_below(current_sp() - STACK_PAINT_MARGIN);
}

uint32_t board_stack_high_water(void)
{
    const volatile uint32_t *p = _sstack;
    while (p < _estack && *p == STACK_PAINT_WORD) {
        p++;
    }
    return (uint32_t)((uintptr_t)_estack - (uintptr_t)p);
}
