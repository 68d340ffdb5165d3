/* canopy-managerd: TaskService handlers (list, wait, cancel; get is in
 * task_wait.c beside the record reader). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "manager/list.h"
#include "manager/manager.h"

void api_list_tasks(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__ListTasksRequest *req = (const void *)r;
	Canopy__V1__ListTasksResponse resp =
		CANOPY__V1__LIST_TASKS_RESPONSE__INIT;
	const char *prefix = req->active_only ? MGR_PREFIX_ACTIVE :
						MGR_PREFIX_TASKS;
	struct manager *m = arg;
	struct etcd_kvs *kvs = NULL;
	Canopy__V1__Task **tasks = NULL;
	const char **names = NULL;
	char next[MGR_KEY_MAX];
	size_t n = 0, i, k = 0;
	int rc;

	rc = mgr_list_page(m, prefix, MGR_NAME_TASK, req->page_token,
			   mgr_page_size(req->page_size), true, &kvs, &n, next);
	if (!rc && (!(tasks = calloc(n ? n : 1, sizeof(*tasks))) ||
		    !(names = calloc(n ? n : 1, sizeof(*names)))))
		rc = -ENOMEM;
	for (i = 0; !rc && i < n; i++)
		names[i] = mgr_key_name(kvs->kvs[i].key, prefix);
	if (!rc)
		rc = mgr_get_many(m, MGR_PREFIX_TASKS, names, n,
				  &canopy__v1__task__descriptor,
				  (ProtobufCMessage **)tasks);
	if (rc == -EINVAL)
		mgr_fail_token(c);
	else if (rc)
		mgr_fail_store(m, c, rc, "listing tasks");
	for (i = 0; !rc && i < n; i++)
		if (tasks[i])
			tasks[k++] = tasks[i];
	if (!rc) {
		resp.n_tasks = k;
		resp.tasks = tasks;
		resp.next_page_token = next;
		api_reply(c, &resp.base);
	}
	for (i = 0; tasks && i < (rc ? n : k); i++)
		if (tasks[i])
			canopy__v1__task__free_unpacked(tasks[i], NULL);
	free(tasks);
	free(names);
	etcd_kvs_free(kvs);
}

void api_wait_task(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__WaitTaskRequest *req = (const void *)r;

	mgr_task_wait(arg, c, req->id);
}

void api_cancel_task(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__CancelTaskRequest *req = (const void *)r;

	mgr_task_cancel(arg, c, req->id);
}
