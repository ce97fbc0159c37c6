/* NUCLEO-F439ZI (MB1137): STM32F439ZI at 168 MHz.
 *
 * Clocks: HSE in bypass mode from the ST-LINK's 8 MHz MCO (the board's default solder bridges)
 *   -> PLL: /M=8 -> 1 MHz VCO input, xN=336 -> 336 MHz VCO, /P=2 -> 168 MHz SYSCLK,
 *      /Q=7 -> 48 MHz for USB/SDIO/RNG (unused here but kept legal).
 *   AHB /1 = 168 MHz, APB1 /4 = 42 MHz (USART3; limit 45), APB2 /2 = 84 MHz (limit 90).
 *   168 MHz needs voltage scale 1 (no over-drive; over-drive only buys 180 MHz) and 5 flash wait
 *   states at 2.7-3.6 V; the ART accelerator (prefetch + I/D caches) hides most of them.
 *   If the HSE does not start (the HSE solder bridges were changed, see UM1974 "HSE clock", or
 *   the ST-LINK stopped its MCO), the same PLL runs from the 16 MHz HSI (M=16) and the red LED
 *   lights: the UART still works, at the HSI's +-1 % accuracy. If even the PLL fails we stay on
 *   the bare HSI at 16 MHz, with every rate derived from that.
 * UART: USART3 on PD8 (TX) / PD9 (RX), AF7, wired to the ST-LINK virtual COM port; 115200 8N1.
 * Time: DWT CYCCNT counts core cycles (board_ticks); SysTick at 1 kHz gives board_millis and
 *   widens CYCCNT to 64 bits (it wraps every 25.6 s).
 * Watchdog: IWDG from the ~32 kHz LSI, /32, reload 4000 -> about 4 s (LSI spread: 2.7-7.5 s).
 *   It is frozen while a debugger halts the core.
 * LEDs: LD1 green PB0  heartbeat: toggles at most every 250 ms from board_watchdog_kick(), so it
 *                      blinks only while the main loop is alive;
 *       LD2 blue  PB7  busy: board_set_busy(true) while computing;
 *       LD3 red   PB14 error: a fault (then the board resets after ~1 s), the previous reset was
 *                      the watchdog's, the HSE failed, or board_set_error(true).
 */
#include "board.h"
#include "cortex-m4/cm4.h"
#include "cortex-m4/counter64.h"
#include "cortex-m4/startup.h"
#include "cortex-m4/stm32_uart.h"
#include "cortex-m4/stm32f4.h"

#define HSE_HZ 8000000u
#define HSI_HZ 16000000u
#define SYSCLK_HZ 168000000u
#define APB1_HZ (SYSCLK_HZ / 4u)
#define PLL_N 336u
#define PLL_P 2u
#define PLL_Q 7u
#define FLASH_WAIT_STATES 5u

/* Start-up waits are bounded by iteration counts (the cycle counter is not running yet). At
 * the 16 MHz HSI these are tens of milliseconds: HSE bypass is ready in microseconds, the PLL
 * locks in ~100 us. */
#define CLOCK_SPIN_LIMIT 500000u

#define LED_PORT GPIOB
#define LED_HEARTBEAT 0u /* LD1 */
#define LED_BUSY 7u      /* LD2 */
#define LED_ERROR 14u    /* LD3 */
#define HEARTBEAT_MS 250u

#define UART_TX_PIN 8u /* PD8 */
#define UART_RX_PIN 9u /* PD9 */
#define GPIO_AF_USART3 7u

#define IWDG_RELOAD 4000u /* 32 kHz / 32 = 1 kHz -> 4 s */

#define FAULT_MAGIC 0xFA017EC0u

/* Kept across the software reset that follows a fault, for a debugger to read (`p g_last_fault`)
 * and for the next boot to light LD3. */
struct fault_record {
    uint32_t magic;
    uint32_t exception, pc, lr, cfsr, hfsr, mmfar, bfar;
};
__attribute__((section(".noinit"))) struct fault_record g_last_fault;

static uint32_t s_sysclk_hz = HSI_HZ; /* what clock_init() achieved */
static uint32_t s_apb1_hz = HSI_HZ;
static volatile uint32_t s_millis;
static counter64_t s_cycles; /* CYCCNT widened to 64 bits */
static uint32_t s_last_heartbeat_ms;
static bool s_clock_fault;
static bool s_watchdog_reset;

static void led(unsigned pin, bool on)
{
    /* BSRR: atomic against the fault handler and interrupts, no read-modify-write. */
    LED_PORT->BSRR = on ? (1u << pin) : (1u << (pin + 16u));
}

static void led_toggle(unsigned pin)
{
    led(pin, (LED_PORT->ODR & (1u << pin)) == 0u);
}

static void gpio_mode(gpio_t *port, unsigned pin, uint32_t mode)
{
    port->MODER = (port->MODER & ~(3u << (2u * pin))) | (mode << (2u * pin));
}

static bool wait_set(volatile uint32_t *reg, uint32_t mask)
{
    for (uint32_t spin = 0; spin < CLOCK_SPIN_LIMIT; spin++) {
        if ((*reg & mask) == mask) {
            return true;
        }
    }
    return false;
}

static void clock_init(void)
{
    /* Voltage scale 1 must be selected while the PLL is off; it takes effect once it runs. */
    RCC->APB1ENR |= RCC_APB1ENR_PWREN;
    (void)RCC->APB1ENR; /* the enable needs two cycles before PWR answers */
    PWR->CR = (PWR->CR & ~PWR_CR_VOS_MASK) | PWR_CR_VOS_SCALE1;

    uint32_t pll_src;
    uint32_t pll_m;
    RCC->CR |= RCC_CR_HSEBYP; /* an external clock, not a crystal: set before HSEON */
    RCC->CR |= RCC_CR_HSEON;
    if (wait_set(&RCC->CR, RCC_CR_HSERDY)) {
        pll_src = RCC_PLLCFGR_SRC_HSE;
        pll_m = HSE_HZ / 1000000u;
    } else {
        RCC->CR &= ~(RCC_CR_HSEON | RCC_CR_HSEBYP);
        s_clock_fault = true;
        pll_src = 0u; /* HSI, which we are running from anyway */
        pll_m = HSI_HZ / 1000000u;
    }

    RCC->PLLCFGR = RCC_PLLCFGR_M(pll_m) | RCC_PLLCFGR_N(PLL_N) | RCC_PLLCFGR_P(PLL_P) |
                   RCC_PLLCFGR_Q(PLL_Q) | pll_src;
    RCC->CR |= RCC_CR_PLLON;
    if (!wait_set(&RCC->CR, RCC_CR_PLLRDY)) {
        /* No PLL: stay on the HSI at 16 MHz (all prescalers /1) rather than hang. */
        s_clock_fault = true;
        return;
    }
    (void)wait_set(&PWR->CSR, PWR_CSR_VOSRDY);

    /* Flash first: it must already be slow enough when the clock goes up. Read back, since the
     * new latency only applies once the register says so. */
    FLASH->ACR = FLASH_ACR_LATENCY(FLASH_WAIT_STATES) | FLASH_ACR_PRFTEN | FLASH_ACR_ICEN |
                 FLASH_ACR_DCEN;
    while ((FLASH->ACR & FLASH_ACR_LATENCY_MASK) != FLASH_ACR_LATENCY(FLASH_WAIT_STATES)) {
    }

    /* Bus dividers before the switch, so APB1 never sees more than 42 MHz. */
    RCC->CFGR = (RCC->CFGR & ~(RCC_CFGR_HPRE_MASK | RCC_CFGR_PPRE1_MASK | RCC_CFGR_PPRE2_MASK)) |
                RCC_CFGR_HPRE_DIV1 | RCC_CFGR_PPRE1_DIV4 | RCC_CFGR_PPRE2_DIV2;
    RCC->CFGR = (RCC->CFGR & ~RCC_CFGR_SW_MASK) | RCC_CFGR_SW_PLL;
    while ((RCC->CFGR & RCC_CFGR_SWS_MASK) != RCC_CFGR_SWS_PLL) {
    }
    s_sysclk_hz = SYSCLK_HZ;
    s_apb1_hz = APB1_HZ;
}

static void leds_init(void)
{
    RCC->AHB1ENR |= RCC_AHB1ENR_GPIOBEN;
    (void)RCC->AHB1ENR;
    const unsigned pins[] = {LED_HEARTBEAT, LED_BUSY, LED_ERROR};
    for (unsigned i = 0; i < 3u; i++) {
        led(pins[i], false);
        gpio_mode(LED_PORT, pins[i], GPIO_MODE_OUTPUT); /* push-pull, low speed: reset values */
    }
}

static void uart_pins_init(void)
{
    RCC->AHB1ENR |= RCC_AHB1ENR_GPIODEN;
    RCC->APB1ENR |= RCC_APB1ENR_USART3EN;
    (void)RCC->APB1ENR;
    GPIOD->AFR[1] = (GPIOD->AFR[1] & ~((0xFu << 0) | (0xFu << 4))) |
                    (GPIO_AF_USART3 << 4u * (UART_TX_PIN - 8u)) |
                    (GPIO_AF_USART3 << 4u * (UART_RX_PIN - 8u));
    GPIOD->OSPEEDR = (GPIOD->OSPEEDR & ~(3u << (2u * UART_TX_PIN))) |
                     (GPIO_SPEED_MEDIUM << (2u * UART_TX_PIN));
    /* Pull-up on RX: the line idles high, and a floating input (ST-LINK unpowered) would read as
     * a stream of framing errors. */
    GPIOD->PUPDR = (GPIOD->PUPDR & ~(3u << (2u * UART_RX_PIN))) |
                   (GPIO_PULL_UP << (2u * UART_RX_PIN));
    gpio_mode(GPIOD, UART_TX_PIN, GPIO_MODE_AF);
    gpio_mode(GPIOD, UART_RX_PIN, GPIO_MODE_AF);
}

static void counters_init(void)
{
    /* Keep the core clocked during WFI so CYCCNT, our time base, does not stop in board_idle();
     * it costs a few mA while idle, nothing next to the ST-LINK on the same USB cable. */
    DBGMCU_CR |= DBGMCU_CR_DBG_SLEEP;
    COREDEBUG_DEMCR |= DEMCR_TRCENA;
    DWT_LAR = DWT_LAR_KEY;
    DWT->CYCCNT = 0u;
    DWT->CTRL |= DWT_CTRL_CYCCNTENA;
    counter64_start(&s_cycles, DWT->CYCCNT);

    SYSTICK->CTRL = 0u;
    SYSTICK->LOAD = s_sysclk_hz / 1000u - 1u;
    SYSTICK->VAL = 0u;
    SCB->SHPR[SHPR_SYSTICK] = NVIC_PRIO(2u);
    SYSTICK->CTRL = SYSTICK_CTRL_CLKSOURCE_CPU | SYSTICK_CTRL_TICKINT | SYSTICK_CTRL_ENABLE;
}

static void watchdog_init(void)
{
    /* A debugger halting the core must not get the board reset under it. */
    DBGMCU_APB1_FZ |= DBGMCU_APB1_FZ_IWDG_STOP;
    IWDG->KR = IWDG_KEY_START; /* also starts the LSI */
    IWDG->KR = IWDG_KEY_UNLOCK;
    IWDG->PR = IWDG_PR_DIV32;
    IWDG->RLR = IWDG_RELOAD - 1u;
    /* PR/RLR cross into the LSI domain; wait (bounded) for the update before reloading. */
    for (uint32_t spin = 0; IWDG->SR != 0u && spin < CLOCK_SPIN_LIMIT * 10u; spin++) {
    }
    IWDG->KR = IWDG_KEY_RELOAD;
}

void SysTick_Handler(void)
{
    s_millis++;
    counter64_observe(&s_cycles, DWT->CYCCNT);
}

void USART3_IRQHandler(void)
{
    stm32_uart_isr();
}

void board_init(void)
{
    /* Why we are booting: read before anything else clears it. */
    uint32_t csr = RCC->CSR;
    s_watchdog_reset = (csr & RCC_CSR_IWDGRSTF) != 0u;
    /* Only a software reset can follow a recorded fault; after power-up .noinit is noise. */
    bool after_fault = (csr & RCC_CSR_SFTRSTF) != 0u && g_last_fault.magic == FAULT_MAGIC;
    RCC->CSR = csr | RCC_CSR_RMVF;

    cm4_enable_fault_traps();
    clock_init();
    leds_init();
    if (s_clock_fault || s_watchdog_reset || after_fault) {
        led(LED_ERROR, true);
    }
    g_last_fault.magic = 0u; /* reported once; the record itself stays for the debugger */
    counters_init();
    uart_pins_init();
    stm32_uart_init(USART3, s_apb1_hz, IRQ_USART3, 115200u);
    watchdog_init();
    irq_enable();
}

const char *board_name(void)
{
    return "nucleo-f439zi";
}

uint32_t board_ticks(void)
{
    return DWT->CYCCNT;
}

uint64_t board_ticks64(void)
{
    return counter64_read(&s_cycles, &DWT->CYCCNT);
}

const char *board_tick_unit(void)
{
    return "cycles";
}

uint32_t board_clock_hz(void)
{
    return s_sysclk_hz;
}

uint32_t board_millis(void)
{
    return s_millis;
}

void board_set_busy(bool busy)
{
    led(LED_BUSY, busy);
}

void board_set_error(bool error)
{
    led(LED_ERROR, error);
}

void board_watchdog_kick(void)
{
    IWDG->KR = IWDG_KEY_RELOAD;
    uint32_t now = s_millis;
    if (now - s_last_heartbeat_ms >= HEARTBEAT_MS) {
        s_last_heartbeat_ms = now;
        led_toggle(LED_HEARTBEAT);
    }
}

void board_idle(void)
{
    /* PRIMASK set: a pending interrupt still ends WFI, so a byte arriving between the check and
     * the WFI cannot be slept through. SysTick wakes us every millisecond regardless. */
    uint32_t primask = irq_save();
    if (!stm32_uart_rx_pending()) {
        wfi();
    }
    irq_restore(primask);
}

void board_reset(void)
{
    system_reset();
}

void board_exit(int status)
{
    /* Nowhere to exit to: a test image ending on the board just starts over. */
    (void)status;
    system_reset();
}

void board_fault(uint32_t exception, const uint32_t *frame)
{
    irq_disable();
    g_last_fault = (struct fault_record){
        .magic = FAULT_MAGIC,
        .exception = exception,
        .pc = frame[6],
        .lr = frame[5],
        .cfsr = SCB->CFSR,
        .hfsr = SCB->HFSR,
        .mmfar = SCB->MMFAR,
        .bfar = SCB->BFAR,
    };
    /* The GPIOB clock may not be on yet if we fault very early. */
    RCC->AHB1ENR |= RCC_AHB1ENR_GPIOBEN;
    (void)RCC->AHB1ENR;
    gpio_mode(LED_PORT, LED_ERROR, GPIO_MODE_OUTPUT);
    led(LED_ERROR, true);
    led(LED_BUSY, false);
    stm32_uart_write_polled("\r\nFAULT: resetting\r\n");
    /* Most of a second of red LED before the reset, so a human sees it (well inside the
     * watchdog's timeout). */
    for (volatile uint32_t spin = 0; spin < 20000000u; spin++) {
    }
    system_reset();
}
