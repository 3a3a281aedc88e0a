#include "tap.h"
int main(void){plan_auto(); ok(1,"placeholder"); return done();}
