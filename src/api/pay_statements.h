/* pay_statements.h - the handlers of pay_statements.c, for the route table. */
#ifndef COFFER_API_PAY_STATEMENTS_H
#define COFFER_API_PAY_STATEMENTS_H

#include "api/pay.h"

#endif
