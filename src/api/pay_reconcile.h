/* pay_reconcile.h - the handlers of pay_reconcile.c, for the route table. */
#ifndef COFFER_API_PAY_RECONCILE_H
#define COFFER_API_PAY_RECONCILE_H

#include "api/pay.h"

#endif
