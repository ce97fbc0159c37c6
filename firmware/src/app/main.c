/* Firmware entry point, the same on every board: bring the board up, then run the protocol loop
 * (src/app/app.h) forever. Kept apart from app.c so that the tests, which have their own main(),
 * can link the app and drive it. */
#include "app/app.h"
#include "board.h"

int main(void)
{
    board_init();
    app_init(NULL);
    app_run();
}
