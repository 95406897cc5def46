/* pay_paycode.h - the handlers of pay_paycode.c, for the route table. */
#ifndef COFFER_API_PAY_PAYCODE_H
#define COFFER_API_PAY_PAYCODE_H

#include "api/pay.h"

#endif
