/* STM32F4 peripherals used by the two ARM boards (RM0090: STM32F405/415, F407/417, F427/437,
 * F429/439). Only what we touch; offsets checked at compile time. The F405 that QEMU models and
 * the F439 share these layouts and addresses. */
#ifndef RNNPOOL_STM32F4_H
#define RNNPOOL_STM32F4_H

#include "cortex-m4/cm4.h"

typedef struct {
    REG CR;         /* 0x00 */
    REG PLLCFGR;    /* 0x04 */
    REG CFGR;       /* 0x08 */
    REG CIR;        /* 0x0C */
    REG AHB1RSTR;   /* 0x10 */
    REG AHB2RSTR;   /* 0x14 */
    REG AHB3RSTR;   /* 0x18 */
    uint32_t rsv0;
    REG APB1RSTR;   /* 0x20 */
    REG APB2RSTR;   /* 0x24 */
    uint32_t rsv1[2];
    REG AHB1ENR;    /* 0x30 */
    REG AHB2ENR;    /* 0x34 */
    REG AHB3ENR;    /* 0x38 */
    uint32_t rsv2;
    REG APB1ENR;    /* 0x40 */
    REG APB2ENR;    /* 0x44 */
    uint32_t rsv3[2];
    REG AHB1LPENR;  /* 0x50 */
    REG AHB2LPENR;  /* 0x54 */
    REG AHB3LPENR;  /* 0x58 */
    uint32_t rsv4;
    REG APB1LPENR;  /* 0x60 */
    REG APB2LPENR;  /* 0x64 */
    uint32_t rsv5[2];
    REG BDCR;       /* 0x70 */
    REG CSR;        /* 0x74 */
} rcc_t;
_Static_assert(offsetof(rcc_t, APB1ENR) == 0x40, "RCC layout");
_Static_assert(offsetof(rcc_t, CSR) == 0x74, "RCC layout");
#define RCC ((rcc_t *)0x40023800u)

#define RCC_CR_HSION (1u << 0)
#define RCC_CR_HSIRDY (1u << 1)
#define RCC_CR_HSEON (1u << 16)
#define RCC_CR_HSERDY (1u << 17)
#define RCC_CR_HSEBYP (1u << 18)
#define RCC_CR_CSSON (1u << 19)
#define RCC_CR_PLLON (1u << 24)
#define RCC_CR_PLLRDY (1u << 25)

#define RCC_PLLCFGR_M(m) ((uint32_t)(m) << 0)          /* 2..63: VCO input = src / M */
#define RCC_PLLCFGR_N(n) ((uint32_t)(n) << 6)          /* 50..432: VCO = in * N */
#define RCC_PLLCFGR_P(p) ((uint32_t)((p) / 2u - 1u) << 16) /* 2,4,6,8: SYSCLK = VCO / P */
#define RCC_PLLCFGR_SRC_HSE (1u << 22)
#define RCC_PLLCFGR_Q(q) ((uint32_t)(q) << 24)         /* 2..15: 48 MHz domain = VCO / Q */

#define RCC_CFGR_SW_MASK (3u << 0)
#define RCC_CFGR_SW_PLL (2u << 0)
#define RCC_CFGR_SWS_MASK (3u << 2)
#define RCC_CFGR_SWS_PLL (2u << 2)
#define RCC_CFGR_HPRE_MASK (0xFu << 4)
#define RCC_CFGR_HPRE_DIV1 (0u << 4)
#define RCC_CFGR_PPRE1_MASK (7u << 10)
#define RCC_CFGR_PPRE2_MASK (7u << 13)
#define RCC_CFGR_PPRE1_DIV4 (5u << 10)
#define RCC_CFGR_PPRE2_DIV2 (4u << 13)

#define RCC_AHB1ENR_GPIOBEN (1u << 1)
#define RCC_AHB1ENR_GPIODEN (1u << 3)
#define RCC_APB1ENR_TIM2EN (1u << 0)
#define RCC_APB1ENR_USART3EN (1u << 18)
#define RCC_APB1ENR_PWREN (1u << 28)
#define RCC_APB2ENR_USART1EN (1u << 4)

#define RCC_CSR_RMVF (1u << 24)
#define RCC_CSR_BORRSTF (1u << 25)
#define RCC_CSR_PINRSTF (1u << 26)
#define RCC_CSR_PORRSTF (1u << 27)
#define RCC_CSR_SFTRSTF (1u << 28)
#define RCC_CSR_IWDGRSTF (1u << 29)
#define RCC_CSR_WWDGRSTF (1u << 30)
#define RCC_CSR_LPWRRSTF (1u << 31)

typedef struct {
    REG ACR;   /* 0x00 */
    REG KEYR;  /* 0x04 */
    REG OPTKEYR; /* 0x08 */
    REG SR;    /* 0x0C */
    REG CR;    /* 0x10 */
} flash_t;
#define FLASH ((flash_t *)0x40023C00u)
#define FLASH_ACR_LATENCY(ws) ((uint32_t)(ws) << 0)
#define FLASH_ACR_LATENCY_MASK (0xFu << 0)
#define FLASH_ACR_PRFTEN (1u << 8)
#define FLASH_ACR_ICEN (1u << 9)
#define FLASH_ACR_DCEN (1u << 10)
#define FLASH_ACR_ICRST (1u << 11)
#define FLASH_ACR_DCRST (1u << 12)

typedef struct {
    REG CR;  /* 0x00 */
    REG CSR; /* 0x04 */
} pwr_t;
#define PWR ((pwr_t *)0x40007000u)
#define PWR_CR_VOS_MASK (3u << 14)
#define PWR_CR_VOS_SCALE1 (3u << 14) /* F42x/43x encoding: 11 = scale 1 */
#define PWR_CSR_VOSRDY (1u << 14)

typedef struct {
    REG MODER;   /* 0x00: 2 bits per pin */
    REG OTYPER;  /* 0x04 */
    REG OSPEEDR; /* 0x08 */
    REG PUPDR;   /* 0x0C */
    REG IDR;     /* 0x10 */
    REG ODR;     /* 0x14 */
    REG BSRR;    /* 0x18: low half sets, high half resets, atomically */
    REG LCKR;    /* 0x1C */
    REG AFR[2];  /* 0x20: 4 bits per pin; AFR[0] pins 0-7, AFR[1] pins 8-15 */
} gpio_t;
_Static_assert(offsetof(gpio_t, AFR) == 0x20, "GPIO layout");
#define GPIOB ((gpio_t *)0x40020400u)
#define GPIOD ((gpio_t *)0x40020C00u)
#define GPIO_MODE_OUTPUT 1u
#define GPIO_MODE_AF 2u
#define GPIO_SPEED_LOW 0u
#define GPIO_SPEED_MEDIUM 1u
#define GPIO_PULL_UP 1u

typedef struct {
    REG SR;   /* 0x00 */
    REG DR;   /* 0x04 */
    REG BRR;  /* 0x08 */
    REG CR1;  /* 0x0C */
    REG CR2;  /* 0x10 */
    REG CR3;  /* 0x14 */
    REG GTPR; /* 0x18 */
} usart_t;
#define USART1 ((usart_t *)0x40011000u)
#define USART3 ((usart_t *)0x40004800u)
#define USART_SR_PE (1u << 0)
#define USART_SR_FE (1u << 1)
#define USART_SR_NF (1u << 2)
#define USART_SR_ORE (1u << 3)
#define USART_SR_RXNE (1u << 5)
#define USART_SR_TC (1u << 6)
#define USART_SR_TXE (1u << 7)
#define USART_CR1_RE (1u << 2)
#define USART_CR1_TE (1u << 3)
#define USART_CR1_RXNEIE (1u << 5)
#define USART_CR1_TXEIE (1u << 7)
#define USART_CR1_UE (1u << 13)

typedef struct {
    REG KR;  /* 0x00 */
    REG PR;  /* 0x04 */
    REG RLR; /* 0x08 */
    REG SR;  /* 0x0C */
} iwdg_t;
#define IWDG ((iwdg_t *)0x40003000u)
#define IWDG_KEY_RELOAD 0xAAAAu
#define IWDG_KEY_UNLOCK 0x5555u
#define IWDG_KEY_START 0xCCCCu
#define IWDG_PR_DIV32 3u

typedef struct {
    REG CR1;   /* 0x00 */
    REG CR2;   /* 0x04 */
    REG SMCR;  /* 0x08 */
    REG DIER;  /* 0x0C */
    REG SR;    /* 0x10 */
    REG EGR;   /* 0x14 */
    REG CCMR1; /* 0x18 */
    REG CCMR2; /* 0x1C */
    REG CCER;  /* 0x20 */
    REG CNT;   /* 0x24 */
    REG PSC;   /* 0x28 */
    REG ARR;   /* 0x2C */
} tim_t;
_Static_assert(offsetof(tim_t, CNT) == 0x24, "TIM layout");
#define TIM2 ((tim_t *)0x40000000u)
#define TIM_CR1_CEN (1u << 0)
#define TIM_EGR_UG (1u << 0)

#define DBGMCU_CR (*(REG *)0xE0042004u)
#define DBGMCU_CR_DBG_SLEEP (1u << 0)
#define DBGMCU_APB1_FZ (*(REG *)0xE0042008u)
#define DBGMCU_APB1_FZ_IWDG_STOP (1u << 12)

/* Interrupt numbers (position in the vector table after the 16 system entries). */
#define IRQ_TIM2 28u
#define IRQ_USART1 37u
#define IRQ_USART3 39u

#endif
