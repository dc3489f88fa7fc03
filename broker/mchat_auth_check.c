/*
 * Unit checks for mchat_auth.c without a broker: the plugin is linked against
 * stand-ins for the few mosquitto_* functions it calls. Built by
 * `make -C broker check` with AddressSanitizer, whose leak check at exit
 * proves that reloads and cleanup free everything.
 *
 * Usage: mchat_auth_check [DIR]   (a scratch directory, default /tmp)
 *        mchat_auth_check --bench N DIR   (time loading N memberships)
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define MOSQ_ERR_SUCCESS 0
#define MOSQ_ERR_AUTH 11
#define MOSQ_ERR_ACL_DENIED 12
#define MOSQ_ERR_PLUGIN_DEFER 17

/* ---- stand-ins for the broker ------------------------------------------ */

struct mosquitto {
	const char *id;
	const char *username;
};

static MOSQ_FUNC_generic_callback callbacks[MOSQ_EVT_DISCONNECT + 1];
static void *callback_userdata[MOSQ_EVT_DISCONNECT + 1];
static char kicked[256];
static char last_log[512];

void *mosquitto_calloc(size_t n, size_t size) { return calloc(n, size); }
void mosquitto_free(void *p) { free(p); }
void *mosquitto_malloc(size_t size) { return malloc(size); }
void *mosquitto_realloc(void *p, size_t size) { return realloc(p, size); }
char *mosquitto_strdup(const char *s) { return strdup(s); }
const char *mosquitto_client_id(const struct mosquitto *c) { return c->id; }
const char *mosquitto_client_username(const struct mosquitto *c) { return c->username; }

void mosquitto_log_printf(int level, const char *fmt, ...)
{
	va_list ap;
	(void)level;
	va_start(ap, fmt);
	vsnprintf(last_log, sizeof(last_log), fmt, ap);
	va_end(ap);
}

int mosquitto_kick_client_by_username(const char *username, bool with_will)
{
	(void)with_will;
	strncat(kicked, username, sizeof(kicked) - strlen(kicked) - 2);
	strcat(kicked, ",");
	return MOSQ_ERR_SUCCESS;
}

static char kicked_ids[256];

int mosquitto_kick_client_by_clientid(const char *clientid, bool with_will)
{
	(void)with_will;
	strncat(kicked_ids, clientid, sizeof(kicked_ids) - strlen(kicked_ids) - 2);
	strcat(kicked_ids, ",");
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_callback_register(mosquitto_plugin_id_t *id, int event,
		MOSQ_FUNC_generic_callback cb, const void *event_data, void *userdata)
{
	(void)id;
	(void)event_data;
	callbacks[event] = cb;
	callback_userdata[event] = userdata;
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_callback_unregister(mosquitto_plugin_id_t *id, int event,
		MOSQ_FUNC_generic_callback cb, const void *event_data)
{
	(void)id;
	(void)cb;
	(void)event_data;
	callbacks[event] = NULL;
	return MOSQ_ERR_SUCCESS;
}

/* ---- helpers ------------------------------------------------------------- */

static int failures;

#define CHECK(cond) do{ \
	if(!(cond)){ fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); failures++; } \
}while(0)

static int auth(const char *username, const char *client_id)
{
	struct mosquitto client = {client_id, username};
	struct mosquitto_evt_basic_auth ed = {0};
	ed.client = &client;
	ed.username = (char *)username;
	return callbacks[MOSQ_EVT_BASIC_AUTH](MOSQ_EVT_BASIC_AUTH, &ed, callback_userdata[MOSQ_EVT_BASIC_AUTH]);
}

static int auth_pw(const char *username, const char *client_id, const char *password)
{
	struct mosquitto client = {client_id, username};
	struct mosquitto_evt_basic_auth ed = {0};
	ed.client = &client;
	ed.username = (char *)username;
	ed.password = (char *)password;
	return callbacks[MOSQ_EVT_BASIC_AUTH](MOSQ_EVT_BASIC_AUTH, &ed, callback_userdata[MOSQ_EVT_BASIC_AUTH]);
}

static int acl(const char *username, const char *topic, int access)
{
	struct mosquitto client = {"x_y", username};
	struct mosquitto_evt_acl_check ed = {0};
	ed.client = &client;
	ed.topic = topic;
	ed.access = access;
	return callbacks[MOSQ_EVT_ACL_CHECK](MOSQ_EVT_ACL_CHECK, &ed, callback_userdata[MOSQ_EVT_ACL_CHECK]);
}

static void reload(void)
{
	struct mosquitto_evt_reload ed = {0};
	callbacks[MOSQ_EVT_RELOAD](MOSQ_EVT_RELOAD, &ed, callback_userdata[MOSQ_EVT_RELOAD]);
}

/* Ticks after the plugin's watch interval has passed. */
static void tick(void)
{
	struct timespec pause = {0, 110 * 1000 * 1000};
	struct mosquitto_evt_tick ed = {0};
	nanosleep(&pause, NULL);
	callbacks[MOSQ_EVT_TICK](MOSQ_EVT_TICK, &ed, callback_userdata[MOSQ_EVT_TICK]);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if(f == NULL){ perror(path); exit(2); }
	fputs(text, f);
	fclose(f);
}

static void *start(const char *group_file, const char *kick_file)
{
	struct mosquitto_opt opts[] = {
		{(char *)"group_file", (char *)group_file},
		{(char *)"kick_file", (char *)kick_file},
	};
	void *userdata = NULL;
	int versions[] = {4, 5};
	CHECK(mosquitto_plugin_version(2, versions) == 5);
	CHECK(mosquitto_plugin_init(NULL, &userdata, opts, 2) == MOSQ_ERR_SUCCESS);
	return userdata;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int bench(long n, const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/groups-bench", dir);
	FILE *f = fopen(path, "w");
	if(f == NULL){ perror(path); return 2; }
	for(long i = 0; i < n; i++){
		fprintf(f, "grp_%05ld emp_%06ld\n", (i * 7919) % 5000, i / 10);
	}
	fclose(f);

	void *userdata = start(path, "");
	double best = 1e9;
	for(int i = 0; i < 5; i++){
		double t = now_ms();
		reload();
		double dt = now_ms() - t;
		if(dt < best) best = dt;
	}
	printf("loaded %ld memberships: best of 5 reloads %.1f ms (%s)\n", n, best, last_log);
	double t = now_ms();
	long hits = 0;
	for(long i = 0; i < n; i++){
		char topic[64], user[32];
		snprintf(topic, sizeof(topic), "mchat/group/grp_%05ld", (i * 7919) % 5000);
		snprintf(user, sizeof(user), "emp_%06ld", i / 10);
		hits += acl(user, topic, MOSQ_ACL_READ) == MOSQ_ERR_SUCCESS;
	}
	printf("%ld lookups (%ld members): %.0f ns each\n", n, hits, (now_ms() - t) * 1e6 / (double)n);
	mosquitto_plugin_cleanup(userdata, NULL, 0);
	remove(path);
	return hits == n ? 0 : 1;
}

/* Web tokens: expected values computed by org.web_tokens.token_sign (Python's hmac). */
#define WEB_CID "emp_a_web-0a1b2c3d"
#define WEB_SID "0123456789abcdef"
#define WEB_TOKEN "v1.4102444800." WEB_SID ".e0bd70704f956ece6f19aa253f85e2440ecda7300cf2e3f947ee61796bfc1891"
#define WEB_TOKEN_EXPIRED "v1.1000." WEB_SID ".9934400dc4cf50c01157dc554b3fe441c9f78b9a454b8c2cce1e1a44ce3274b7"
/* Signed with a 100-byte key (longer than a SHA-256 block: the key is hashed first). */
#define WEB_TOKEN_LONG_KEY "v1.4102444800." WEB_SID ".05df5cf4f8849d3aeeb359b39164e918ac99674a76ec1c0e3d0ee5d6639c1f1a"

static void check_web_tokens(const char *dir)
{
	char secret[4096], revoked[4096];
	snprintf(secret, sizeof(secret), "%s/mchat_auth_check.web-secret", dir);
	snprintf(revoked, sizeof(revoked), "%s/mchat_auth_check.web-revoked", dir);
	remove(secret);
	remove(revoked);
	struct mosquitto_opt opts[] = {
		{(char *)"web_secret_file", secret},
		{(char *)"web_revoked_file", revoked},
	};
	void *userdata = NULL;
	CHECK(mosquitto_plugin_init(NULL, &userdata, opts, 2) == MOSQ_ERR_SUCCESS);

	/* No key yet: tokens are refused; other passwords are left to password_file. */
	CHECK(auth_pw("emp_a", WEB_CID, WEB_TOKEN) == MOSQ_ERR_AUTH);
	CHECK(auth_pw("emp_a", WEB_CID, "device-password") == MOSQ_ERR_PLUGIN_DEFER);
	CHECK(auth_pw("emp_a", WEB_CID, NULL) == MOSQ_ERR_PLUGIN_DEFER);

	write_text(secret, "0123456789abcdef0123456789abcdef\n");
	CHECK(auth_pw("emp_a", WEB_CID, WEB_TOKEN) == MOSQ_ERR_SUCCESS);
	CHECK(auth_pw("emp_a", WEB_CID, WEB_TOKEN_EXPIRED) == MOSQ_ERR_AUTH);
	CHECK(strstr(last_log, "expired") != NULL);
	CHECK(auth_pw("emp_a", "emp_a_web-0a1b2c3e", WEB_TOKEN) == MOSQ_ERR_AUTH);
	CHECK(auth_pw("emp_b", "emp_b_web-0a1b2c3d", WEB_TOKEN) == MOSQ_ERR_AUTH);
	CHECK(auth_pw("emp_a", "emp_a_phone", WEB_TOKEN) == MOSQ_ERR_AUTH);
	CHECK(auth_pw("emp_a", WEB_CID, "v1.4102444800." WEB_SID ".e0bd") == MOSQ_ERR_AUTH);
	CHECK(auth_pw("emp_a", WEB_CID, "v1.4102444800.0123.e0bd70704f956ece6f19aa253f85e2440ecda7300cf2e3f947ee61796bfc1891")
			== MOSQ_ERR_AUTH);
	CHECK(auth_pw("emp_a", WEB_CID, "v1..x") == MOSQ_ERR_AUTH);
	CHECK(auth_pw("emp_a", WEB_CID, WEB_TOKEN_LONG_KEY) == MOSQ_ERR_AUTH);

	/* A replaced key applies at once. */
	char longkey[128];
	memset(longkey, 'k', 100);
	longkey[100] = '\0';
	write_text(secret, longkey);
	CHECK(auth_pw("emp_a", WEB_CID, WEB_TOKEN_LONG_KEY) == MOSQ_ERR_SUCCESS);
	CHECK(auth_pw("emp_a", WEB_CID, WEB_TOKEN) == MOSQ_ERR_AUTH);
	write_text(secret, "0123456789abcdef0123456789abcdef\n");

	/* An ended session: its tokens are refused, its client ids kicked once. */
	write_text(revoked, "# comment\n" WEB_SID " 4102444800 " WEB_CID " emp_a_web-ffff0000\n");
	tick();
	CHECK(strcmp(kicked_ids, WEB_CID ",emp_a_web-ffff0000,") == 0);
	CHECK(auth_pw("emp_a", WEB_CID, WEB_TOKEN) == MOSQ_ERR_AUTH);
	CHECK(strstr(last_log, "session ended") != NULL);
	kicked_ids[0] = '\0';
	write_text(revoked, WEB_SID " 4102444800 " WEB_CID "\nfedcba9876543210 4102444800\n");
	tick();
	CHECK(kicked_ids[0] == '\0');
	remove(revoked);
	tick();
	CHECK(auth_pw("emp_a", WEB_CID, WEB_TOKEN) == MOSQ_ERR_SUCCESS);

	/* A CONNECT that first sees a new entry refuses the token but kicks nobody
	 * then: the kick waits for the tick. */
	write_text(revoked, WEB_SID " 4102444800 " WEB_CID "\n");
	CHECK(auth_pw("emp_a", WEB_CID, WEB_TOKEN) == MOSQ_ERR_AUTH);
	CHECK(kicked_ids[0] == '\0');
	tick();
	CHECK(strcmp(kicked_ids, WEB_CID ",") == 0);

	CHECK(mosquitto_plugin_cleanup(userdata, NULL, 0) == MOSQ_ERR_SUCCESS);
	remove(secret);
}

int main(int argc, char **argv)
{
	if(argc == 4 && strcmp(argv[1], "--bench") == 0){
		return bench(atol(argv[2]), argv[3]);
	}
	const char *dir = argc > 1 ? argv[1] : "/tmp";
	char groups[4096], kick[4096];
	snprintf(groups, sizeof(groups), "%s/mchat_auth_check.groups", dir);
	snprintf(kick, sizeof(kick), "%s/mchat_auth_check.kick", dir);
	remove(groups);
	remove(kick);

	/* A missing group file is an empty table. */
	void *userdata = start(groups, kick);
	CHECK(acl("emp_a", "mchat/group/g1", MOSQ_ACL_READ) == MOSQ_ERR_ACL_DENIED);

	/* Client id = {username}_{device}. */
	CHECK(auth("emp_a", "emp_a_dev1") == MOSQ_ERR_PLUGIN_DEFER);
	CHECK(auth("emp_a", "emp_a_0123456789012345678901234567890123456789012345678901234567890123")
			== MOSQ_ERR_PLUGIN_DEFER);
	CHECK(auth("emp_a", "emp_a_01234567890123456789012345678901234567890123456789012345678901234")
			== MOSQ_ERR_AUTH);
	CHECK(auth("emp_a", "emp_a_") == MOSQ_ERR_AUTH);
	CHECK(auth("emp_a", "emp_a") == MOSQ_ERR_AUTH);
	CHECK(auth("emp_a", "emp_ab_dev1") == MOSQ_ERR_AUTH);
	CHECK(auth("emp_a", "emp_a_x_y") == MOSQ_ERR_AUTH);
	CHECK(auth("emp_a", "emp_b_dev1") == MOSQ_ERR_AUTH);
	CHECK(auth("emp_a", "auto-3F1A") == MOSQ_ERR_AUTH);
	CHECK(auth("", "_dev1") == MOSQ_ERR_AUTH);
	CHECK(auth(NULL, "emp_a_dev1") == MOSQ_ERR_AUTH);
	CHECK(auth("emp/+", "emp/+_dev1") == MOSQ_ERR_AUTH);
	CHECK(auth("mchat-bridge", "mchat-bridge_b1") == MOSQ_ERR_PLUGIN_DEFER);

	/* Memberships, comments, blank lines, tabs, CRLF, duplicates. */
	write_text(groups, "# comment\n\ng1 emp_a\ng1 emp_a\n  g-2\temp_b \r\ng1 mchat-bridge\ng10 emp_c");
	reload();
	CHECK(acl("emp_a", "mchat/group/g1", MOSQ_ACL_READ) == MOSQ_ERR_SUCCESS);
	CHECK(acl("emp_b", "mchat/group/g-2", MOSQ_ACL_READ) == MOSQ_ERR_SUCCESS);
	CHECK(acl("emp_c", "mchat/group/g10", MOSQ_ACL_READ) == MOSQ_ERR_SUCCESS);
	CHECK(acl("emp_b", "mchat/group/g1", MOSQ_ACL_READ) == MOSQ_ERR_ACL_DENIED);
	CHECK(acl("emp_a", "mchat/group/g", MOSQ_ACL_READ) == MOSQ_ERR_ACL_DENIED);
	CHECK(acl("emp_", "mchat/group/g1", MOSQ_ACL_READ) == MOSQ_ERR_ACL_DENIED);
	CHECK(acl("emp_a", "mchat/group/g1 emp_a", MOSQ_ACL_READ) == MOSQ_ERR_ACL_DENIED);
	CHECK(strstr(last_log, "loaded 4 group memberships") != NULL);
	/* Only exact group topics and READ are answered; the rest is deferred. */
	CHECK(acl("emp_b", "mchat/group/g1", MOSQ_ACL_SUBSCRIBE) == MOSQ_ERR_PLUGIN_DEFER);
	CHECK(acl("emp_b", "mchat/group/g1", MOSQ_ACL_WRITE) == MOSQ_ERR_PLUGIN_DEFER);
	CHECK(acl("emp_b", "mchat/group/+", MOSQ_ACL_READ) == MOSQ_ERR_PLUGIN_DEFER);
	CHECK(acl("emp_b", "mchat/group/#", MOSQ_ACL_READ) == MOSQ_ERR_PLUGIN_DEFER);
	CHECK(acl("emp_b", "mchat/group/g1/x", MOSQ_ACL_READ) == MOSQ_ERR_PLUGIN_DEFER);
	CHECK(acl("emp_b", "mchat/group/", MOSQ_ACL_READ) == MOSQ_ERR_PLUGIN_DEFER);
	CHECK(acl("emp_b", "mchat/inbox/emp_b", MOSQ_ACL_READ) == MOSQ_ERR_PLUGIN_DEFER);
	CHECK(acl("mchat-bridge", "mchat/group/g-2", MOSQ_ACL_READ) == MOSQ_ERR_PLUGIN_DEFER);

	/* A bad line keeps the previous table. */
	write_text(groups, "g1 emp_b\ng1 emp/b\n");
	reload();
	CHECK(strstr(last_log, "line 2") != NULL);
	CHECK(acl("emp_a", "mchat/group/g1", MOSQ_ACL_READ) == MOSQ_ERR_SUCCESS);
	CHECK(acl("emp_b", "mchat/group/g1", MOSQ_ACL_READ) == MOSQ_ERR_ACL_DENIED);
	write_text(groups, "g1\n");
	reload();
	CHECK(acl("emp_a", "mchat/group/g1", MOSQ_ACL_READ) == MOSQ_ERR_SUCCESS);
	FILE *nul = fopen(groups, "w");
	fwrite("g1 emp_b\n\0g1 emp_c\n", 1, 19, nul);
	fclose(nul);
	reload();
	CHECK(strstr(last_log, "NUL byte") != NULL);
	CHECK(acl("emp_b", "mchat/group/g1", MOSQ_ACL_READ) == MOSQ_ERR_ACL_DENIED);

	/* The kick file is consumed once. */
	write_text(kick, "emp_a\nemp_b\n");
	reload();
	CHECK(strcmp(kicked, "emp_a,emp_b,") == 0);
	CHECK(fopen(kick, "r") == NULL);
	kicked[0] = '\0';
	reload();
	CHECK(kicked[0] == '\0');

	/* Without SIGHUP: a replaced group file is read again on a tick. */
	char replacement[4200];
	snprintf(replacement, sizeof(replacement), "%s.new", groups);
	write_text(replacement, "g7 emp_a\n");
	CHECK(rename(replacement, groups) == 0);
	tick();
	CHECK(acl("emp_a", "mchat/group/g7", MOSQ_ACL_READ) == MOSQ_ERR_SUCCESS);
	CHECK(acl("emp_a", "mchat/group/g1", MOSQ_ACL_READ) == MOSQ_ERR_ACL_DENIED);
	last_log[0] = '\0';
	tick();
	CHECK(last_log[0] == '\0');
	remove(groups);
	tick();
	CHECK(acl("emp_a", "mchat/group/g7", MOSQ_ACL_READ) == MOSQ_ERR_ACL_DENIED);
	CHECK(strstr(last_log, "loaded 0 group memberships") != NULL);

	/* Many reloads of a larger file: the leak check at exit covers them. */
	FILE *f = fopen(groups, "w");
	for(int i = 0; i < 5000; i++) fprintf(f, "g%d emp_%d\n", i % 50, i);
	fclose(f);
	for(int i = 0; i < 20; i++) reload();
	CHECK(acl("emp_4999", "mchat/group/g49", MOSQ_ACL_READ) == MOSQ_ERR_SUCCESS);
	CHECK(acl("emp_4999", "mchat/group/g48", MOSQ_ACL_READ) == MOSQ_ERR_ACL_DENIED);
	remove(groups);
	reload();
	CHECK(acl("emp_4999", "mchat/group/g49", MOSQ_ACL_READ) == MOSQ_ERR_ACL_DENIED);

	CHECK(mosquitto_plugin_cleanup(userdata, NULL, 0) == MOSQ_ERR_SUCCESS);
	check_web_tokens(dir);
	CHECK(callbacks[MOSQ_EVT_ACL_CHECK] == NULL);
	CHECK(callbacks[MOSQ_EVT_TICK] == NULL);

	if(failures){
		fprintf(stderr, "%d check(s) failed\n", failures);
		return 1;
	}
	printf("mchat_auth: all checks passed\n");
	return 0;
}
