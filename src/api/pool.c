/*
 * pool.c - worker threads for handlers that block (argon2id, identity database round trips).
 *
 * A bounded queue of jobs (API_POOL_QUEUE_MAX); each job is one suspended request. The worker
 * runs the job's function, which fills a response kept in the request's arena, then resumes
 * the request; api_offload_finish hands that response to the server.
 */
#include <pthread.h>
#include <stdlib.h>

#include "api/api.h"
#include "core/limits.h"

#define API_POOL_QUEUE_MAX 4096
#define API_POOL_THREADS_MAX 32

struct api_job {
    struct http_request *req;
    api_job_fn run;
    struct http_response resp;
};

struct api_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    size_t head, n;
    struct api_job *queue[API_POOL_QUEUE_MAX];
    unsigned threads_n;
    pthread_t threads[API_POOL_THREADS_MAX];
};

static void *worker_main(void *arg)
{
    struct api_pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->n == 0 && !p->stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->n == 0) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        struct api_job *job = p->queue[p->head];
        p->head = (p->head + 1) % API_POOL_QUEUE_MAX;
        p->n--;
        pthread_mutex_unlock(&p->mu);
        job->run(job->req, &job->resp);
        http_request_resume(job->req);
    }
}

enum cf_err api_pool_create(unsigned threads, struct api_pool **out)
{
    CF_ASSERT(threads >= 1);
    if (threads > API_POOL_THREADS_MAX)
        return CF_ERR_CONFIG;
    struct api_pool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return CF_ERR_NOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
            api_pool_destroy(p);
            return CF_ERR_NOMEM;
        }
        p->threads_n++;
    }
    *out = p;
    return CF_OK;
}

/* Lets queued jobs finish, then stops the workers. */
void api_pool_destroy(struct api_pool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->threads_n; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

enum http_action api_offload(struct http_request *req, struct http_response *resp, api_job_fn run)
{
    struct api *api = req->app;
    struct api_pool *p = api->pool;
    struct api_job *job = arena_calloc(req->arena, 1, sizeof(*job));
    if (job == NULL) {
        api_problem(req, resp, CF_ERR_NOMEM, NULL);
        return HTTP_DONE;
    }
    job->req = req;
    job->run = run;
    job->resp.status = 500;
    req->user = job;
    pthread_mutex_lock(&p->mu);
    bool full = p->n >= API_POOL_QUEUE_MAX || p->stopping;
    if (!full) {
        http_request_suspend(req); /* before a worker can resume it */
        p->queue[(p->head + p->n) % API_POOL_QUEUE_MAX] = job;
        p->n++;
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    if (full) {
        api_problem(req, resp, CF_ERR_OVERLOADED, NULL);
        return HTTP_DONE;
    }
    return HTTP_SUSPEND;
}

enum http_action api_offload_finish(struct http_request *req, struct http_response *resp)
{
    struct api_job *job = req->user;
    CF_ASSERT(job != NULL && job->req == req);
    *resp = job->resp;
    return HTTP_DONE;
}
