/* pay_requests.h - the handlers of pay_requests.c, for the route table. */
#ifndef COFFER_API_PAY_REQUESTS_H
#define COFFER_API_PAY_REQUESTS_H

#include "api/pay.h"

#endif
