/* pay_fx.h - the handlers of pay_fx.c, for the route table. */
#ifndef COFFER_API_PAY_FX_H
#define COFFER_API_PAY_FX_H

#include "api/pay.h"

#endif
