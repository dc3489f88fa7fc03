/*
 * mchat_auth: MChat's Mosquitto 2.0 plugin (plugin API v5).
 *
 * BASIC_AUTH: a CONNECT is refused unless its client id is exactly
 * "{username}_{device}", device = 1-64 chars of [A-Za-z0-9-]. Otherwise the
 * plugin defers, so password_file decides. This binds client ids to employees,
 * which makes the %c/%u patterns of acl_file a real boundary (no impersonation,
 * no takeover of another employee's live id).
 *
 * ACL_CHECK: read access to "mchat/group/{group_id}" is answered from a
 * membership table, so group access needs no per-employee acl_file lines (whose
 * reload cost grows quadratically). Mosquitto 2.0 asks plugins before acl_file
 * and their answer is final: a member may read without any acl_file line, and a
 * non-member is denied whatever acl_file says. Everything else, including
 * SUBSCRIBE, is deferred to acl_file. Mosquitto checks READ on every delivery,
 * so a subscription made before joining starts delivering once the member is
 * added, and stops as soon as the member is removed.
 *
 * The group file is read again whenever it was replaced, without SIGHUP: it is
 * looked at (one stat) before every group READ decision, so a removal holds from
 * the first delivery after the file was replaced, and at every TICK (at most
 * every 100 ms), so an addition applies without traffic. A SIGHUP is not free:
 * Mosquitto then re-verifies the password of every live session (PBKDF2, about
 * 0.1 ms each), so membership changes should not need one.
 *
 * RELOAD (SIGHUP): the membership table is read again, then every username
 * listed in plugin_opt_kick_file (one per line) is disconnected and the file is
 * removed. Until the next TICK every existing session passes BASIC_AUTH: the
 * reload's re-check of sessions against password_file would otherwise drop
 * offline persistent sessions whose password changed, and Mosquitto 2.0.11
 * aborts soon after doing that. MChat names revoked users (credential reset,
 * deactivation) in the kick file instead; kicking touches connected sessions
 * only, and a revoked user's next CONNECT meets the new password_file.
 *
 * Options:
 *   plugin_opt_group_file   "{group_id} {employee_id}" per line; '#' comments
 *   plugin_opt_bridge_user  the bridge's username (default "mchat-bridge"):
 *                           its group-topic checks are deferred to acl_file
 *   plugin_opt_kick_file    optional: usernames to disconnect at the next reload
 *   plugin_opt_web_secret_file   optional: key of the web tokens (see "Web tokens")
 *   plugin_opt_web_revoked_file  optional: web sessions that ended (see "Web tokens")
 *
 * BASIC_AUTH also accepts a short-lived web token as the password of a
 * "{username}_web-..." client id (see "Web tokens" below).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

/* Debian ships mosquitto.h (the error and log constants) in libmosquitto-dev,
 * not in mosquitto-dev; fall back to the values of the 2.0 ABI. */
#if defined(__has_include)
#if __has_include(<mosquitto.h>)
#include <mosquitto.h>
#define MCHAT_HAVE_MOSQUITTO_H 1
#endif
#endif
#ifndef MCHAT_HAVE_MOSQUITTO_H
#define MOSQ_ERR_SUCCESS 0
#define MOSQ_ERR_NOMEM 1
#define MOSQ_ERR_AUTH 11
#define MOSQ_ERR_ACL_DENIED 12
#define MOSQ_ERR_PLUGIN_DEFER 17
#define MOSQ_LOG_INFO (1 << 0)
#define MOSQ_LOG_NOTICE (1 << 1)
#define MOSQ_LOG_WARNING (1 << 2)
#define MOSQ_LOG_ERR (1 << 3)
#endif

#define DEVICE_MAX_LEN 64
#define WATCH_INTERVAL_MS 100
#define GROUP_PREFIX "mchat/group/"
#define GROUP_PREFIX_LEN (sizeof(GROUP_PREFIX) - 1)

/* ------------------------------------------------------------------------
 * Membership set: open addressing, linear probing. A key is the line
 * "group_id employee_id" (space-separated; ids never contain spaces), stored
 * in one arena that is the file's own contents.
 * ------------------------------------------------------------------------ */

struct member_slot {
	const char *key; /* NULL = empty slot */
	uint64_t hash;
	uint32_t len;
};

struct member_set {
	char *arena;               /* file contents, keys point into it */
	struct member_slot *slots; /* capacity is a power of two */
	size_t capacity;
	size_t count;
};

#define FNV_OFFSET 14695981039346656037ULL
#define FNV_PRIME 1099511628211ULL

static uint64_t fnv1a(uint64_t h, const char *s, size_t n)
{
	for(size_t i = 0; i < n; i++){
		h ^= (unsigned char)s[i];
		h *= FNV_PRIME;
	}
	return h;
}

static uint64_t member_hash(const char *gid, size_t glen, const char *eid, size_t elen)
{
	uint64_t h = fnv1a(FNV_OFFSET, gid, glen);
	h = fnv1a(h, " ", 1);
	return fnv1a(h, eid, elen);
}

static void member_set_free(struct member_set *set)
{
	if(set == NULL) return;
	mosquitto_free(set->arena);
	mosquitto_free(set->slots);
	mosquitto_free(set);
}

/* Inserts a key unless already present. The slot array never fills: its
 * capacity is at least twice the number of lines. */
static void member_set_add(struct member_set *set, const char *key, uint32_t len, uint64_t hash)
{
	size_t mask = set->capacity - 1;
	size_t i = (size_t)hash & mask;

	while(set->slots[i].key != NULL){
		if(set->slots[i].hash == hash && set->slots[i].len == len
				&& memcmp(set->slots[i].key, key, len) == 0){
			return;
		}
		i = (i + 1) & mask;
	}
	set->slots[i].key = key;
	set->slots[i].hash = hash;
	set->slots[i].len = len;
	set->count++;
}

/* Keys are inserted a few lines after they are parsed, with the slot each one
 * hashes to prefetched meanwhile: a large table does not fit in the caches,
 * and a memory stall per key would otherwise dominate the load time. */
#define INSERT_LAG 8

struct insert_queue {
	struct member_slot items[INSERT_LAG];
	size_t count;
};

static void insert_queue_push(struct member_set *set, struct insert_queue *q,
		const char *key, uint32_t len, uint64_t hash)
{
	__builtin_prefetch(&set->slots[(size_t)hash & (set->capacity - 1)], 1);
	struct member_slot *item = &q->items[q->count % INSERT_LAG];
	if(q->count >= INSERT_LAG) member_set_add(set, item->key, item->len, item->hash);
	item->key = key;
	item->len = len;
	item->hash = hash;
	q->count++;
}

static void insert_queue_drain(struct member_set *set, struct insert_queue *q)
{
	size_t n = q->count < INSERT_LAG ? q->count : INSERT_LAG;
	for(size_t i = 0; i < n; i++){
		struct member_slot *item = &q->items[i];
		member_set_add(set, item->key, item->len, item->hash);
	}
	q->count = 0;
}

static bool member_set_contains(const struct member_set *set,
		const char *gid, size_t glen, const char *eid, size_t elen)
{
	if(set == NULL || set->count == 0) return false;

	uint64_t hash = member_hash(gid, glen, eid, elen);
	size_t len = glen + 1 + elen;
	size_t mask = set->capacity - 1;
	size_t i = (size_t)hash & mask;

	while(set->slots[i].key != NULL){
		const struct member_slot *s = &set->slots[i];
		if(s->hash == hash && s->len == len
				&& memcmp(s->key, gid, glen) == 0
				&& s->key[glen] == ' '
				&& memcmp(s->key + glen + 1, eid, elen) == 0){
			return true;
		}
		i = (i + 1) & mask;
	}
	return false;
}

static bool is_id_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
		|| c == '_' || c == '-';
}

static bool is_device_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
		|| c == '-';
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* Reads a whole file into a NUL-terminated buffer. Returns NULL and sets
 * errno on failure. */
static char *read_file(const char *path, size_t *out_len)
{
	FILE *f = fopen(path, "rb");
	if(f == NULL) return NULL;

	struct stat st;
	if(fstat(fileno(f), &st) != 0){
		int saved = errno;
		fclose(f);
		errno = saved;
		return NULL;
	}
	size_t cap = (size_t)st.st_size + 1;
	char *buf = mosquitto_malloc(cap);
	if(buf == NULL){
		fclose(f);
		errno = ENOMEM;
		return NULL;
	}
	size_t len = 0;
	for(;;){
		if(len + 1 == cap){ /* file grew since fstat */
			char *bigger = mosquitto_realloc(buf, cap * 2);
			if(bigger == NULL){
				mosquitto_free(buf);
				fclose(f);
				errno = ENOMEM;
				return NULL;
			}
			buf = bigger;
			cap *= 2;
		}
		size_t n = fread(buf + len, 1, cap - 1 - len, f);
		len += n;
		if(n == 0) break;
	}
	int failed = ferror(f);
	fclose(f);
	if(failed){
		mosquitto_free(buf);
		errno = EIO;
		return NULL;
	}
	buf[len] = '\0';
	*out_len = len;
	return buf;
}

/* Parses the group file into a new set. Returns NULL on any error (logged);
 * a missing file gives an empty set. */
static struct member_set *member_set_load(const char *path)
{
	struct member_set *set = mosquitto_calloc(1, sizeof(*set));
	if(set == NULL) goto nomem;

	size_t len = 0;
	set->arena = read_file(path, &len);
	if(set->arena == NULL){
		if(errno == ENOENT){
			mosquitto_log_printf(MOSQ_LOG_WARNING,
					"mchat_auth: group file %s does not exist: no group memberships", path);
			set->capacity = 0;
			return set;
		}
		mosquitto_log_printf(MOSQ_LOG_ERR, "mchat_auth: cannot read group file %s: %s",
				path, strerror(errno));
		member_set_free(set);
		return NULL;
	}

	if(memchr(set->arena, '\0', len) != NULL){
		mosquitto_log_printf(MOSQ_LOG_ERR,
				"mchat_auth: group file %s contains a NUL byte; keeping the previous memberships", path);
		member_set_free(set);
		return NULL;
	}
	size_t lines = 1;
	for(size_t i = 0; i < len; i++){
		if(set->arena[i] == '\n') lines++;
	}
	set->capacity = 16;
	while(set->capacity < lines * 2) set->capacity *= 2;
	set->slots = mosquitto_calloc(set->capacity, sizeof(struct member_slot));
	if(set->slots == NULL) goto nomem;

	struct insert_queue pending = {0};
	char *line = set->arena;
	size_t lineno = 0;
	while(line != NULL && *line != '\0'){
		lineno++;
		char *nl = strchr(line, '\n');
		char *next = NULL;
		if(nl != NULL){
			*nl = '\0';
			next = nl + 1;
		}

		char *p = line;
		while(is_blank(*p)) p++;
		if(*p == '\0' || *p == '#'){
			line = next;
			continue;
		}
		char *gid = p;
		while(is_id_char(*p)) p++;
		char *gid_end = p;
		if(gid_end == gid || (*p != ' ' && *p != '\t')) goto bad_line;
		while(*p == ' ' || *p == '\t') p++;
		char *eid = p;
		while(is_id_char(*p)) p++;
		char *eid_end = p;
		if(eid_end == eid) goto bad_line;
		while(is_blank(*p)) p++;
		if(*p != '\0') goto bad_line;

		/* Normalise to "gid eid" in place: the key must be contiguous. */
		size_t glen = (size_t)(gid_end - gid);
		size_t elen = (size_t)(eid_end - eid);
		if(glen + 1 + elen > UINT32_MAX) goto bad_line;
		*gid_end = ' ';
		memmove(gid_end + 1, eid, elen);
		insert_queue_push(set, &pending, gid, (uint32_t)(glen + 1 + elen),
				member_hash(gid, glen, gid_end + 1, elen));
		line = next;
		continue;

bad_line:
		mosquitto_log_printf(MOSQ_LOG_ERR,
				"mchat_auth: group file %s line %zu is not \"{group_id} {employee_id}\"; "
				"keeping the previous memberships", path, lineno);
		member_set_free(set);
		return NULL;
	}
	insert_queue_drain(set, &pending);
	return set;

nomem:
	mosquitto_log_printf(MOSQ_LOG_ERR, "mchat_auth: out of memory loading %s", path);
	member_set_free(set);
	return NULL;
}

/* ------------------------------------------------------------------------
 * Plugin state and callbacks
 * ------------------------------------------------------------------------ */

/* What identifies one version of a file that is replaced atomically. */
struct file_version {
	bool exists;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

static struct file_version file_version_of(const char *path)
{
	struct file_version v;
	struct stat st;
	memset(&v, 0, sizeof(v));
	if(stat(path, &st) == 0){
		v.exists = true;
		v.dev = st.st_dev;
		v.ino = st.st_ino;
		v.size = st.st_size;
		v.mtime = st.st_mtim;
	}
	return v;
}

static bool file_version_equal(const struct file_version *a, const struct file_version *b)
{
	return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino && a->size == b->size
		&& a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* ------------------------------------------------------------------------
 * Web tokens: the short-lived MQTT credentials of the browser client.
 *
 * A signed-in page gets, over HTTPS, a password of the form
 *   v1.{expiry}.{sid}.{mac}
 * expiry = Unix seconds, sid = the web session's id (16-64 lowercase hex),
 * mac = lowercase hex HMAC-SHA256(secret, "v1\n{username}\n{client_id}\n{expiry}\n{sid}").
 * The secret is the stripped contents of plugin_opt_web_secret_file (written
 * once by MChat, mode 600), so a token is bound to one user and one client id
 * ("{username}_web-..."), and verified here without any database. A token is
 * accepted until its expiry; a connected session is not cut when it expires.
 *
 * plugin_opt_web_revoked_file lists the web sessions that ended (sign-out,
 * deactivation, credential reset) while tokens of theirs may still be valid:
 *   {sid} {until} [{client_id} ...]
 * Tokens of a listed sid are refused; when a sid first appears, the listed
 * client ids (the connections that session opened) are disconnected at the
 * next tick. The file
 * is watched like the group file (one stat per token CONNECT and per tick), so
 * neither a sign-in nor a sign-out needs a SIGHUP.
 * ------------------------------------------------------------------------ */

#define WEB_TOKEN_PREFIX "v1."
#define WEB_DEVICE_PREFIX "web-"
#define WEB_SID_MIN 16
#define WEB_SID_MAX 64
#define SHA256_LEN 32

struct sha256_ctx {
	uint32_t h[8];
	uint64_t bytes;
	uint8_t block[64];
	size_t used;
};

static const uint32_t SHA256_K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t ror32(uint32_t x, int n)
{
	return (x >> n) | (x << (32 - n));
}

static void sha256_compress(struct sha256_ctx *c, const uint8_t *p)
{
	uint32_t w[64];
	for(int i = 0; i < 16; i++){
		w[i] = (uint32_t)p[4*i] << 24 | (uint32_t)p[4*i+1] << 16 | (uint32_t)p[4*i+2] << 8 | p[4*i+3];
	}
	for(int i = 16; i < 64; i++){
		uint32_t s0 = ror32(w[i-15], 7) ^ ror32(w[i-15], 18) ^ (w[i-15] >> 3);
		uint32_t s1 = ror32(w[i-2], 17) ^ ror32(w[i-2], 19) ^ (w[i-2] >> 10);
		w[i] = w[i-16] + s0 + w[i-7] + s1;
	}
	uint32_t a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3];
	uint32_t e = c->h[4], f = c->h[5], g = c->h[6], h = c->h[7];
	for(int i = 0; i < 64; i++){
		uint32_t t1 = h + (ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25)) + ((e & f) ^ (~e & g))
			+ SHA256_K[i] + w[i];
		uint32_t t2 = (ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22)) + ((a & b) ^ (a & cc) ^ (b & cc));
		h = g; g = f; f = e; e = d + t1;
		d = cc; cc = b; b = a; a = t1 + t2;
	}
	c->h[0] += a; c->h[1] += b; c->h[2] += cc; c->h[3] += d;
	c->h[4] += e; c->h[5] += f; c->h[6] += g; c->h[7] += h;
}

static void sha256_init(struct sha256_ctx *c)
{
	static const uint32_t iv[8] = {
		0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
	};
	memcpy(c->h, iv, sizeof(iv));
	c->bytes = 0;
	c->used = 0;
}

static void sha256_update(struct sha256_ctx *c, const void *data, size_t n)
{
	const uint8_t *p = data;
	c->bytes += n;
	while(n > 0){
		size_t take = 64 - c->used < n ? 64 - c->used : n;
		memcpy(c->block + c->used, p, take);
		c->used += take;
		p += take;
		n -= take;
		if(c->used == 64){
			sha256_compress(c, c->block);
			c->used = 0;
		}
	}
}

static void sha256_final(struct sha256_ctx *c, uint8_t out[SHA256_LEN])
{
	uint64_t bits = c->bytes * 8;
	uint8_t pad = 0x80;
	sha256_update(c, &pad, 1);
	pad = 0;
	while(c->used != 56) sha256_update(c, &pad, 1);
	uint8_t len[8];
	for(int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
	sha256_update(c, len, 8);
	for(int i = 0; i < 8; i++){
		out[4*i] = (uint8_t)(c->h[i] >> 24);
		out[4*i+1] = (uint8_t)(c->h[i] >> 16);
		out[4*i+2] = (uint8_t)(c->h[i] >> 8);
		out[4*i+3] = (uint8_t)c->h[i];
	}
}

/* HMAC-SHA256 (RFC 2104) of the concatenation of `parts`. */
static void hmac_sha256(const char *key, size_t klen, const char *const *parts, size_t nparts,
		uint8_t out[SHA256_LEN])
{
	uint8_t k[64] = {0};
	if(klen > 64){
		struct sha256_ctx kc;
		sha256_init(&kc);
		sha256_update(&kc, key, klen);
		sha256_final(&kc, k);
	}else{
		memcpy(k, key, klen);
	}
	uint8_t pad[64];
	struct sha256_ctx c;
	for(int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x36;
	sha256_init(&c);
	sha256_update(&c, pad, 64);
	for(size_t i = 0; i < nparts; i++) sha256_update(&c, parts[i], strlen(parts[i]));
	uint8_t inner[SHA256_LEN];
	sha256_final(&c, inner);
	for(int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x5c;
	sha256_init(&c);
	sha256_update(&c, pad, 64);
	sha256_update(&c, inner, SHA256_LEN);
	sha256_final(&c, out);
}

static bool is_lower_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

struct web_revoked_entry {
	char *sid;
	int64_t until;
	char *client_ids; /* space-separated; may be empty */
	bool kicked;      /* its client ids were disconnected (or nobody could be connected) */
};

struct web_tokens {
	char *secret_file;  /* NULL: web tokens are refused */
	char *revoked_file; /* NULL: no revocations */
	char *secret;       /* NULL until a non-empty secret was read */
	size_t secret_len;
	struct file_version secret_version;
	struct web_revoked_entry *revoked;
	size_t revoked_count;
	struct file_version revoked_version;
};

static void web_revoked_free(struct web_revoked_entry *entries, size_t count)
{
	for(size_t i = 0; i < count; i++){
		mosquitto_free(entries[i].sid);
		mosquitto_free(entries[i].client_ids);
	}
	mosquitto_free(entries);
}

static void web_tokens_free(struct web_tokens *wt)
{
	mosquitto_free(wt->secret_file);
	mosquitto_free(wt->revoked_file);
	mosquitto_free(wt->secret);
	web_revoked_free(wt->revoked, wt->revoked_count);
	memset(wt, 0, sizeof(*wt));
}

static void web_secret_refresh(struct web_tokens *wt)
{
	if(wt->secret_file == NULL) return;
	struct file_version now = file_version_of(wt->secret_file);
	if(file_version_equal(&now, &wt->secret_version)) return;
	wt->secret_version = now;
	size_t len = 0;
	char *text = read_file(wt->secret_file, &len);
	if(text == NULL){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mchat_auth: cannot read web secret file %s: %s",
				wt->secret_file, strerror(errno));
		return; /* the previous secret stays */
	}
	while(len > 0 && (text[len-1] == '\n' || text[len-1] == '\r' || text[len-1] == ' ')) len--;
	text[len] = '\0';
	if(len < 16){
		mosquitto_log_printf(MOSQ_LOG_ERR,
				"mchat_auth: web secret file %s is shorter than 16 bytes: web tokens refused",
				wt->secret_file);
		mosquitto_free(text);
		text = NULL;
		len = 0;
	}
	mosquitto_free(wt->secret);
	wt->secret = text;
	wt->secret_len = len;
}

static const struct web_revoked_entry *web_revoked_find(const struct web_revoked_entry *entries,
		size_t count, const char *sid, size_t sid_len)
{
	for(size_t i = 0; i < count; i++){
		if(strlen(entries[i].sid) == sid_len && memcmp(entries[i].sid, sid, sid_len) == 0){
			return &entries[i];
		}
	}
	return NULL;
}

/* Reads the revoked file again if it was replaced. A sid seen for the first time
 * is marked to be kicked (web_revoked_kick_pending), unless `at_start`: when the
 * broker starts nobody is connected. */
static void web_revoked_refresh(struct web_tokens *wt, bool at_start)
{
	if(wt->revoked_file == NULL) return;
	struct file_version now = file_version_of(wt->revoked_file);
	if(file_version_equal(&now, &wt->revoked_version)) return;
	wt->revoked_version = now;

	size_t len = 0;
	char *text = read_file(wt->revoked_file, &len);
	if(text == NULL && errno != ENOENT){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mchat_auth: cannot read web revoked file %s: %s",
				wt->revoked_file, strerror(errno));
		return; /* the previous list stays */
	}
	size_t lines = 0;
	for(size_t i = 0; text != NULL && i < len; i++){
		if(text[i] == '\n') lines++;
	}
	struct web_revoked_entry *fresh = mosquitto_calloc(lines + 1, sizeof(*fresh));
	if(fresh == NULL){
		mosquitto_free(text);
		return;
	}
	size_t count = 0;
	char *save_line = NULL;
	for(char *line = text ? strtok_r(text, "\n", &save_line) : NULL; line != NULL;
			line = strtok_r(NULL, "\n", &save_line)){
		char *save = NULL;
		char *sid = strtok_r(line, " \t\r", &save);
		char *until = sid ? strtok_r(NULL, " \t\r", &save) : NULL;
		if(sid == NULL || sid[0] == '#' || until == NULL || count > lines) continue;
		char *rest = strtok_r(NULL, "\r", &save);
		fresh[count].sid = mosquitto_strdup(sid);
		fresh[count].until = strtoll(until, NULL, 10);
		fresh[count].client_ids = mosquitto_strdup(rest ? rest : "");
		const struct web_revoked_entry *known = web_revoked_find(wt->revoked, wt->revoked_count,
				sid, strlen(sid));
		fresh[count].kicked = known ? known->kicked : at_start;
		if(fresh[count].sid == NULL || fresh[count].client_ids == NULL){
			count++;
			web_revoked_free(fresh, count);
			mosquitto_free(text);
			return;
		}
		count++;
	}
	mosquitto_free(text);
	web_revoked_free(wt->revoked, wt->revoked_count);
	wt->revoked = fresh;
	wt->revoked_count = count;
}

/* Disconnects the client ids of sessions that ended since the last call. Called
 * from TICK only, never while another client's CONNECT is being handled. */
static void web_revoked_kick_pending(struct web_tokens *wt)
{
	for(size_t i = 0; i < wt->revoked_count; i++){
		struct web_revoked_entry *entry = &wt->revoked[i];
		if(entry->kicked) continue;
		entry->kicked = true;
		char *ids = mosquitto_strdup(entry->client_ids);
		if(ids == NULL) continue;
		char *save = NULL;
		for(char *cid = strtok_r(ids, " \t", &save); cid != NULL; cid = strtok_r(NULL, " \t", &save)){
			mosquitto_kick_client_by_clientid(cid, true);
			mosquitto_log_printf(MOSQ_LOG_NOTICE, "mchat_auth: disconnected web client %s (session ended)", cid);
		}
		mosquitto_free(ids);
	}
}

/* BASIC_AUTH for a password that is a web token; MOSQ_ERR_PLUGIN_DEFER for any
 * other password (password_file decides). The client id's shape was checked. */
static int web_token_auth(struct web_tokens *wt, const char *username, const char *client_id,
		const char *password)
{
	if(password == NULL || strncmp(password, WEB_TOKEN_PREFIX, strlen(WEB_TOKEN_PREFIX)) != 0){
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	const char *device = client_id + strlen(username) + 1;
	const char *reason = NULL;
	if(strncmp(device, WEB_DEVICE_PREFIX, strlen(WEB_DEVICE_PREFIX)) != 0){
		reason = "not a web client id";
		goto refuse;
	}
	/* v1.{expiry}.{sid}.{mac} */
	const char *p = password + strlen(WEB_TOKEN_PREFIX);
	const char *expiry = p;
	while(*p >= '0' && *p <= '9') p++;
	size_t expiry_len = (size_t)(p - expiry);
	if(expiry_len == 0 || expiry_len > 12 || *p != '.'){
		reason = "malformed";
		goto refuse;
	}
	const char *sid = ++p;
	while(is_lower_hex(*p)) p++;
	size_t sid_len = (size_t)(p - sid);
	if(sid_len < WEB_SID_MIN || sid_len > WEB_SID_MAX || *p != '.'){
		reason = "malformed";
		goto refuse;
	}
	const char *mac = ++p;
	if(strlen(mac) != 2 * SHA256_LEN){
		reason = "malformed";
		goto refuse;
	}

	web_secret_refresh(wt);
	if(wt->secret == NULL){
		reason = "no web secret";
		goto refuse;
	}
	char expiry_text[16], sid_text[WEB_SID_MAX + 1];
	memcpy(expiry_text, expiry, expiry_len);
	expiry_text[expiry_len] = '\0';
	memcpy(sid_text, sid, sid_len);
	sid_text[sid_len] = '\0';
	const char *parts[] = {"v1\n", username, "\n", client_id, "\n", expiry_text, "\n", sid_text};
	uint8_t digest[SHA256_LEN];
	hmac_sha256(wt->secret, wt->secret_len, parts, sizeof(parts) / sizeof(parts[0]), digest);
	static const char hex[] = "0123456789abcdef";
	unsigned diff = 0;
	for(size_t i = 0; i < SHA256_LEN; i++){
		diff |= (unsigned)(mac[2*i] ^ hex[digest[i] >> 4]);
		diff |= (unsigned)(mac[2*i+1] ^ hex[digest[i] & 0xf]);
	}
	if(diff != 0){
		reason = "bad signature";
		goto refuse;
	}
	if((int64_t)strtoll(expiry_text, NULL, 10) <= (int64_t)time(NULL)){
		reason = "expired";
		goto refuse;
	}
	web_revoked_refresh(wt, false);
	if(web_revoked_find(wt->revoked, wt->revoked_count, sid, sid_len) != NULL){
		reason = "session ended";
		goto refuse;
	}
	return MOSQ_ERR_SUCCESS;

refuse:
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "mchat_auth: refused web token of \"%s\" for \"%s\": %s",
			username, client_id, reason);
	return MOSQ_ERR_AUTH;
}

struct mchat_auth {
	mosquitto_plugin_id_t *id;
	char *bridge_user;
	char *group_file; /* NULL: no memberships */
	char *kick_file;  /* NULL: no kicking on reload */
	struct member_set *members;
	struct file_version group_file_version; /* the version last read */
	struct timespec group_file_checked;
	bool reloading; /* from RELOAD to the next TICK: sessions are being re-checked */
	struct web_tokens web;
};

static double elapsed_ms(const struct timespec *start)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) * 1e3
		+ (double)(now.tv_nsec - start->tv_nsec) / 1e6;
}

static void load_members(struct mchat_auth *st)
{
	if(st->group_file == NULL) return;

	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	/* Taken before reading: a replacement during the read is seen next tick.
	 * Recorded even if the file is bad, so a bad file is not re-read each tick. */
	st->group_file_version = file_version_of(st->group_file);
	struct member_set *fresh = member_set_load(st->group_file);
	if(fresh == NULL) return; /* error logged; the previous table stays */

	member_set_free(st->members);
	st->members = fresh;
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "mchat_auth: loaded %zu group memberships in %.1f ms",
			fresh->count, elapsed_ms(&start));
}

/* Disconnects every username listed in the kick file. The file is first
 * renamed, so a writer replacing it meanwhile is not lost, and then removed,
 * so the next reload does not kick the same users again. */
static void kick_listed_users(struct mchat_auth *st)
{
	if(st->kick_file == NULL) return;

	size_t plen = strlen(st->kick_file);
	char *taken = mosquitto_malloc(plen + sizeof(".taken"));
	if(taken == NULL) return;
	memcpy(taken, st->kick_file, plen);
	memcpy(taken + plen, ".taken", sizeof(".taken"));

	if(rename(st->kick_file, taken) != 0){
		if(errno != ENOENT){
			mosquitto_log_printf(MOSQ_LOG_ERR, "mchat_auth: cannot take kick file %s: %s",
					st->kick_file, strerror(errno));
		}
		mosquitto_free(taken);
		return;
	}
	size_t len = 0;
	char *text = read_file(taken, &len);
	if(text == NULL){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mchat_auth: cannot read kick file %s: %s",
				taken, strerror(errno));
	}
	unlink(taken);
	mosquitto_free(taken);
	if(text == NULL) return;

	char *save = NULL;
	for(char *name = strtok_r(text, " \t\r\n", &save); name != NULL;
			name = strtok_r(NULL, " \t\r\n", &save)){
		/* with_will is asked for, but Mosquitto 2.0.11 sends no will for an MQTT 5
		 * client it kicks (nor for one it disconnects on reload): whoever
		 * requests the kick publishes the employee's offline status. */
		mosquitto_kick_client_by_username(name, true);
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "mchat_auth: disconnected the sessions of %s", name);
	}
	mosquitto_free(text);
}

/* Reads the group file again if it was replaced since the last read. */
static void refresh_members(struct mchat_auth *st)
{
	if(st->group_file == NULL) return;
	struct file_version now = file_version_of(st->group_file);
	if(!file_version_equal(&now, &st->group_file_version)){
		load_members(st);
	}
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	struct mchat_auth *st = userdata;
	(void)event;

	/* A reload re-checks every session, offline persistent ones included, and
	 * Mosquitto 2.0.11 corrupts its state (and later aborts, e.g. in
	 * will_delay.c) when it disconnects an offline session whose credential
	 * became invalid. So during a reload every existing session passes here;
	 * MChat names the users whose credential changed in the kick file instead,
	 * and kicking only touches connected sessions. No CONNECT is read between
	 * the RELOAD event and the next TICK (same pass of the main loop). */
	if(st->reloading) return MOSQ_ERR_SUCCESS;

	const char *username = ed->username;
	const char *client_id = mosquitto_client_id(ed->client);

	if(username == NULL || username[0] == '\0' || client_id == NULL){
		return MOSQ_ERR_AUTH;
	}
	/* Topic metacharacters in a username would turn %u patterns into
	 * wildcards. */
	if(strpbrk(username, "/+#") != NULL){
		return MOSQ_ERR_AUTH;
	}
	size_t ulen = strlen(username);
	if(strncmp(client_id, username, ulen) != 0 || client_id[ulen] != '_'){
		goto refuse;
	}
	const char *device = client_id + ulen + 1;
	size_t dlen = 0;
	while(device[dlen] != '\0'){
		if(!is_device_char(device[dlen]) || dlen >= DEVICE_MAX_LEN) goto refuse;
		dlen++;
	}
	if(dlen == 0) goto refuse;
	return web_token_auth(&st->web, username, client_id, ed->password);

refuse:
	mosquitto_log_printf(MOSQ_LOG_NOTICE,
			"mchat_auth: refused client id \"%s\" for user \"%s\": not {username}_{device}",
			client_id, username);
	return MOSQ_ERR_AUTH;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	struct mchat_auth *st = userdata;
	(void)event;

	const char *topic = ed->topic;
	if(topic == NULL || strncmp(topic, GROUP_PREFIX, GROUP_PREFIX_LEN) != 0){
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	const char *gid = topic + GROUP_PREFIX_LEN;
	size_t glen = 0;
	while(gid[glen] != '\0'){
		/* Deeper topics and wildcard filters are left to acl_file. */
		if(gid[glen] == '/' || gid[glen] == '+' || gid[glen] == '#') return MOSQ_ERR_PLUGIN_DEFER;
		glen++;
	}
	if(glen == 0) return MOSQ_ERR_PLUGIN_DEFER;

	const char *username = mosquitto_client_username(ed->client);
	if(username == NULL) return MOSQ_ERR_ACL_DENIED;
	if(strcmp(username, st->bridge_user) == 0) return MOSQ_ERR_PLUGIN_DEFER;

	/* SUBSCRIBE is left to acl_file (which grants it): a client told that it
	 * joined a group may subscribe before the broker has reloaded the table,
	 * and must not be refused for good. Each delivery is checked here. */
	if(ed->access != MOSQ_ACL_READ) return MOSQ_ERR_PLUGIN_DEFER;
	/* A removal must hold from the very next delivery: MChat replaces the file
	 * before it answers the removal, so look at the file now (one stat, about a
	 * microsecond) instead of waiting for the next tick. */
	refresh_members(st);
	if(member_set_contains(st->members, gid, glen, username, strlen(username))){
		return MOSQ_ERR_SUCCESS;
	}
	return MOSQ_ERR_ACL_DENIED;
}

static int on_reload(int event, void *event_data, void *userdata)
{
	struct mchat_auth *st = userdata;
	(void)event;
	(void)event_data;

	st->reloading = true;
	load_members(st);
	kick_listed_users(st);
	return MOSQ_ERR_SUCCESS;
}

static int on_tick(int event, void *event_data, void *userdata)
{
	struct mchat_auth *st = userdata;
	(void)event;
	(void)event_data;

	st->reloading = false;
	if(elapsed_ms(&st->group_file_checked) < WATCH_INTERVAL_MS) return MOSQ_ERR_SUCCESS;
	clock_gettime(CLOCK_MONOTONIC, &st->group_file_checked);
	refresh_members(st);
	web_revoked_refresh(&st->web, false);
	web_revoked_kick_pending(&st->web);
	return MOSQ_ERR_SUCCESS;
}

static void state_free(struct mchat_auth *st)
{
	if(st == NULL) return;
	mosquitto_free(st->bridge_user);
	mosquitto_free(st->group_file);
	mosquitto_free(st->kick_file);
	member_set_free(st->members);
	web_tokens_free(&st->web);
	mosquitto_free(st);
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
		struct mosquitto_opt *options, int option_count)
{
	struct mchat_auth *st = mosquitto_calloc(1, sizeof(*st));
	if(st == NULL) return MOSQ_ERR_NOMEM;
	st->id = identifier;

	const char *bridge_user = "mchat-bridge";
	for(int i = 0; i < option_count; i++){
		if(strcmp(options[i].key, "bridge_user") == 0 && options[i].value[0] != '\0'){
			bridge_user = options[i].value;
		}else if(strcmp(options[i].key, "group_file") == 0 && options[i].value[0] != '\0'){
			mosquitto_free(st->group_file);
			st->group_file = mosquitto_strdup(options[i].value);
			if(st->group_file == NULL) goto nomem;
		}else if(strcmp(options[i].key, "kick_file") == 0 && options[i].value[0] != '\0'){
			mosquitto_free(st->kick_file);
			st->kick_file = mosquitto_strdup(options[i].value);
			if(st->kick_file == NULL) goto nomem;
		}else if(strcmp(options[i].key, "web_secret_file") == 0 && options[i].value[0] != '\0'){
			mosquitto_free(st->web.secret_file);
			st->web.secret_file = mosquitto_strdup(options[i].value);
			if(st->web.secret_file == NULL) goto nomem;
		}else if(strcmp(options[i].key, "web_revoked_file") == 0 && options[i].value[0] != '\0'){
			mosquitto_free(st->web.revoked_file);
			st->web.revoked_file = mosquitto_strdup(options[i].value);
			if(st->web.revoked_file == NULL) goto nomem;
		}
	}
	st->bridge_user = mosquitto_strdup(bridge_user);
	if(st->bridge_user == NULL) goto nomem;

	if(st->group_file == NULL){
		mosquitto_log_printf(MOSQ_LOG_WARNING,
				"mchat_auth: no plugin_opt_group_file: group topics are readable by no one");
	}
	load_members(st);
	web_secret_refresh(&st->web);
	web_revoked_refresh(&st->web, true); /* nobody is connected yet */
	/* Kicks requested while the broker was down are moot: nobody is connected. */
	if(st->kick_file != NULL) unlink(st->kick_file);

	int rc = mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, st);
	if(rc == MOSQ_ERR_SUCCESS){
		rc = mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, st);
	}
	if(rc == MOSQ_ERR_SUCCESS){
		rc = mosquitto_callback_register(identifier, MOSQ_EVT_RELOAD, on_reload, NULL, st);
	}
	if(rc == MOSQ_ERR_SUCCESS){
		rc = mosquitto_callback_register(identifier, MOSQ_EVT_TICK, on_tick, NULL, st);
	}
	if(rc != MOSQ_ERR_SUCCESS){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mchat_auth: cannot register callbacks (%d)", rc);
		mosquitto_callback_unregister(identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
		mosquitto_callback_unregister(identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
		mosquitto_callback_unregister(identifier, MOSQ_EVT_RELOAD, on_reload, NULL);
		mosquitto_callback_unregister(identifier, MOSQ_EVT_TICK, on_tick, NULL);
		state_free(st);
		return rc;
	}

	*userdata = st;
	mosquitto_log_printf(MOSQ_LOG_INFO, "mchat_auth: ready (bridge user \"%s\")", st->bridge_user);
	return MOSQ_ERR_SUCCESS;

nomem:
	state_free(st);
	return MOSQ_ERR_NOMEM;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	struct mchat_auth *st = userdata;
	(void)options;
	(void)option_count;

	if(st == NULL) return MOSQ_ERR_SUCCESS;
	mosquitto_callback_unregister(st->id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(st->id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	mosquitto_callback_unregister(st->id, MOSQ_EVT_RELOAD, on_reload, NULL);
	mosquitto_callback_unregister(st->id, MOSQ_EVT_TICK, on_tick, NULL);
	state_free(st);
	return MOSQ_ERR_SUCCESS;
}
