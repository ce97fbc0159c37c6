#include "board.h"
#include "engine/eng_kernels.h"
#include "rnnpool_model.h"
#include <stdio.h>
#include <string.h>
static void say(const char *s) { board_uart_write((const uint8_t *)s, strlen(s)); }
static int8_t in0[128], in1[128], o0[128], o1[128];
int main(void) {
    board_init();
    char line[120];
    for (int i = 0; i < 128; i++) { in0[i] = (int8_t)(i * 7); in1[i] = (int8_t)(i * 13); }
    pw_layer_t ex = {rnnpool_block1_expand_w, rnnpool_block1_expand_b, rnnpool_block1_expand_m, rnnpool_block1_expand_s, 0, 127, 64, 128, 2};
    pw_layer_t pr = {rnnpool_block1_project_w, rnnpool_block1_project_b, rnnpool_block1_project_m, rnnpool_block1_project_s, -128, 127, 128, 32, 1};
    dw_layer_t dw = {rnnpool_block1_depthwise_w, rnnpool_block1_depthwise_b, rnnpool_block1_depthwise_m, rnnpool_block1_depthwise_s, 0, 127, 128, 2};
    const int8_t *taps[9] = {in0, in1, in0, in1, in0, in1, in0, in1, in0};
    uint32_t t0 = board_ticks(); pw2_opt(&ex, in0, in1, o0, o1); uint32_t t1 = board_ticks();
    snprintf(line, sizeof line, "pw2 expand 64->128: %lu per pair (%lu MACs)\r\n", (unsigned long)(t1 - t0), 2ul*64*128); say(line);
    t0 = board_ticks(); pw2_opt(&pr, in0, in1, o0, o1); t1 = board_ticks();
    snprintf(line, sizeof line, "pw2 project 128->32: %lu per pair (%lu MACs)\r\n", (unsigned long)(t1 - t0), 2ul*128*32); say(line);
    t0 = board_ticks(); dw3x3x2_opt(&dw, taps, taps, o0, o1); t1 = board_ticks();
    snprintf(line, sizeof line, "dw 128: %lu per pair (%lu MACs)\r\n", (unsigned long)(t1 - t0), 2ul*128*9); say(line);
    static int8_t rowsbuf[3][512];
    const int8_t *rows[3] = {rowsbuf[0], rowsbuf[1], rowsbuf[2]};
    t0 = board_ticks(); dw3x3s1x2_opt(&dw, rows, o0, o1); t1 = board_ticks();
    snprintf(line, sizeof line, "dw s1 rows 128: %lu per pair\r\n", (unsigned long)(t1 - t0)); say(line);
    int32_t acc[9][8]; int32_t *a0[9], *a1[9]; for (int i = 0; i < 9; i++) { a0[i] = acc[i]; a1[i] = acc[(i+1)%9]; }
    conv_layer_t h1 = {rnnpool_head1_w, rnnpool_head1_b, rnnpool_head1_m, rnnpool_head1_s, -128, 127, 32, 8, 1};
    t0 = board_ticks(); conv3x3_scatter2_opt(&h1, in0, in1, a0, a1); t1 = board_ticks();
    snprintf(line, sizeof line, "head1 scatter: %lu per pair (%lu MACs)\r\n", (unsigned long)(t1 - t0), 2ul*9*32*8); say(line);
    norm_layer_t n1 = {rnnpool_norm1_m, rnnpool_norm1_s, 32};
    t0 = board_ticks(); l2norm_opt(&n1, in0, o0); t1 = board_ticks();
    snprintf(line, sizeof line, "l2norm 32: %lu\r\n", (unsigned long)(t1 - t0)); say(line);
    {
        static const fg_layer_t rnn1 = {rnnpool_rnn1_W, rnnpool_rnn1_U, rnnpool_rnn1_mw, rnnpool_rnn1_sw, rnnpool_rnn1_mu,
                             rnnpool_rnn1_su, rnnpool_rnn1_bz, rnnpool_rnn1_bc, RNNPOOL_RNN1_ZETA, RNNPOOL_RNN1_NU,
                             rnnpool_lut_sigmoid, rnnpool_lut_tanh, 4};
        static fg_prep_t P; static uint32_t wb[16 * 6];
        fg_prepare(&rnn1, &P, wb);
        static int32_t wxz[8][16]; const int32_t *steps[8]; for (int t = 0; t < 8; t++) steps[t] = wxz[t];
        int16_t h[16];
        t0 = board_ticks(); fg_wxz4_opt(&P, in0, 4, 4, wxz); t1 = board_ticks();
        snprintf(line, sizeof line, "wxz4 x4 steps: %lu\r\n", (unsigned long)(t1 - t0)); say(line);
        t0 = board_ticks(); fg_run_opt(&P, steps, false, h); t1 = board_ticks();
        snprintf(line, sizeof line, "fg_run_opt 8 steps: %lu (%lu per unit-step)\r\n", (unsigned long)(t1 - t0), (unsigned long)(t1-t0)/128); say(line);
    }
    return 0;
}
