import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { type Content, parseConversationKey, safeHttpUrl } from "../client";
import { t } from "../i18n";
import type { Conversation, MessageItem, NoticeItem, ThreadItem } from "../state/store";
import { Avatar, PresenceDot, isOnline, shortTime, useApp, useAppState } from "./common";
import { StreamMeta, TaskMeta, TypingLine } from "./Activity";
import { GroupPanel } from "./GroupPanel";
import { IconAttach, IconBack, IconFile, IconMore } from "./icons";

const RECALL_WINDOW_MS = 120_000;

function formatSize(n: number | undefined): string {
  if (n === undefined) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function ImageView({ content }: { content: Extract<Content, { type: "image" }> }) {
  const app = useApp();
  const [src, setSrc] = useState<string | null>(content.key ? null : safeHttpUrl(content.url));
  const [failed, setFailed] = useState(false);
  const [retried, setRetried] = useState(false);
  useEffect(() => {
    if (!content.key) return;
    let live = true;
    app
      .downloadUrl(content.key)
      .then((url) => live && setSrc(safeHttpUrl(url)))
      .catch(() => live && setFailed(true));
    return () => {
      live = false;
    };
  }, [content.key]);
  if (failed || (!content.key && !src)) return <span class="image-failed">{t("image_failed")}</span>;
  if (!src) return <span class="image-loading">{t("image_loading")}</span>;
  const landscape = (content.width ?? 1) >= (content.height ?? 1);
  return (
    <img
      class={`message-image ${landscape ? "landscape" : "portrait"}`}
      src={src}
      alt={content.name ?? t("image")}
      width={content.width}
      height={content.height}
      data-testid="message-image"
      onError={() => {
        // A one-time URL already used (the element was mounted again): ask for a new one once.
        if (content.key && !retried) {
          setRetried(true);
          app
            .downloadUrl(content.key, true)
            .then((url) => setSrc(safeHttpUrl(url)))
            .catch(() => setFailed(true));
        } else setFailed(true);
      }}
    />
  );
}

function FileCard({ content }: { content: Extract<Content, { type: "file" }> }) {
  const app = useApp();
  const [error, setError] = useState("");
  const download = async () => {
    setError("");
    try {
      const url = content.key ? await app.downloadUrl(content.key, true) : content.url;
      const safe = safeHttpUrl(url);
      if (!safe) throw new Error("URL");
      const a = document.createElement("a");
      a.href = safe;
      a.download = content.name ?? "";
      a.rel = "noopener";
      document.body.appendChild(a);
      a.click();
      a.remove();
    } catch (err) {
      setError((err as Error).message);
    }
  };
  return (
    <div class="file-card" data-testid="file-card">
      <span class="file-icon">
        <IconFile />
      </span>
      <span class="file-meta">
        <span class="file-name">{content.name}</span>
        <span class="file-size">{formatSize(content.size)}</span>
        {error && <span class="file-error">{error}</span>}
      </span>
      <button type="button" class="link-button" onClick={download}>
        {t("download")}
      </button>
    </div>
  );
}

function Body({ content }: { content: Content }) {
  if (typeof content === "string") return <span class="message-text">{content}</span>;
  switch (content.type) {
    case "text":
      return <span class="message-text">{content.text}</span>;
    case "image":
      return <ImageView content={content} />;
    case "file":
      return <FileCard content={content} />;
    default:
      return <span class="message-text muted">{t("unknown_content")}</span>;
  }
}

function Receipt({ conversation, item }: { conversation: Conversation; item: MessageItem }) {
  if (item.status !== "sent" || item.seq === null) return null;
  if (conversation.ref.type === "private") {
    const read = conversation.peerReadSeq >= item.seq;
    // The peer's read position is only known from receipts: before one arrives, "未读" is
    // shown for what this page sent, nothing for older messages (they may well be read).
    if (!read && !item.seqId) return null;
    return (
      <span class={read ? "receipt read" : "receipt"} data-testid="receipt">
        {read ? t("read") : t("unread")}
      </span>
    );
  }
  if (item.readCount === undefined) return null;
  const all = item.memberCount !== undefined && item.readCount >= item.memberCount && item.memberCount > 0;
  return (
    <span class={item.readCount > 0 ? "receipt read" : "receipt"} data-testid="receipt">
      {all ? t("group_all_read") : t("group_read", { n: item.readCount })}
    </span>
  );
}

function MessageRow({ conversation, item, canModerate }: { conversation: Conversation; item: MessageItem; canModerate: boolean }) {
  const app = useApp();
  const state = useAppState();
  const me = state.me?.employee_id ?? "";
  const mine = item.from === me;
  if (item.recalled) {
    const text = mine
      ? t("you_recalled")
      : conversation.ref.type === "private"
        ? t("peer_recalled")
        : t("someone_recalled", { name: app.store.nameOf(item.from) });
    return (
      <li class="notice" data-testid="recalled">
        {text}
      </li>
    );
  }
  const recent = Date.now() - Date.parse(item.sentAt) < RECALL_WINDOW_MS;
  const canRecall = item.msgId !== null && item.status === "sent" && !item.streaming && ((mine && recent) || canModerate);
  const isPrivate = conversation.ref.type === "private";
  // Stop: the recipient of a private stream, a group's owner/admin, or the streamer (§13.4).
  const canStop = isPrivate || canModerate || mine;
  const task = item.msgId ? state.tasks.get(item.msgId) : undefined;
  const isTask = mine && isPrivate && !item.stream && (task !== undefined || Boolean(state.employees.get(conversation.ref.id)?.is_ai_agent));
  return (
    <li
      class={`message${mine ? " mine" : ""}`}
      data-testid="message"
      data-seq={item.seq ?? ""}
      data-status={item.status}
      data-streaming={item.streaming ? "true" : undefined}
    >
      {!mine && <Avatar name={app.store.nameOf(item.from)} id={item.from} small />}
      <div class="message-col">
        {!mine && conversation.ref.type === "group" && <span class="message-sender">{app.store.nameOf(item.from)}</span>}
        <div class={item.streaming ? "bubble streaming" : "bubble"}>
          {item.content !== null && <Body content={item.content} />}
          {item.streaming && <span class="stream-caret" aria-hidden="true" />}
        </div>
        <div class="message-meta">
          <span class="message-time">{shortTime(item.sentAt)}</span>
          {item.status === "pending" && <span class="status pending">{state.employees.get(conversation.ref.id)?.is_ai_agent ? t("agent_waiting") : t("sending")}</span>}
          {item.status === "failed" && (
            <span class="status failed" data-testid="send-failed">
              {t("send_failed")}
              {item.error ? `：${item.error}` : ""}
              <button type="button" class="link-button" onClick={() => app.retry(conversation.key, item)}>
                {t("retry")}
              </button>
            </span>
          )}
          {item.status === "agent_timeout" && (
            <>
              <span class="status failed" data-testid="agent-timeout">
                {t("agent_timeout")}
              </span>
              <span class="status-hint">{t("agent_timeout_hint")}</span>
            </>
          )}
          {item.stream && <StreamMeta item={item} canStop={canStop} />}
          {isTask && <TaskMeta item={item} task={task} />}
          {mine && <Receipt conversation={conversation} item={item} />}
          {canRecall && (
            <button type="button" class="link-button recall" onClick={() => void app.recall(item)} data-testid="recall">
              {t("recall")}
            </button>
          )}
        </div>
      </div>
    </li>
  );
}

function NoticeRow({ item }: { item: NoticeItem }) {
  return (
    <li class="notice" data-testid="notice">
      {item.text}
    </li>
  );
}

function Composer({ conversationKey, disabled }: { conversationKey: string; disabled: boolean }) {
  const app = useApp();
  const [text, setText] = useState("");
  const area = useRef<HTMLTextAreaElement>(null);
  const fileInput = useRef<HTMLInputElement>(null);
  useEffect(() => {
    setText("");
    area.current?.focus();
  }, [conversationKey]);
  const send = () => {
    const value = text;
    if (!value.trim()) return;
    if (value.length > 10000) {
      app.toast(t("draft_too_long"));
      return;
    }
    setText("");
    void app.sendText(conversationKey, value);
  };
  return (
    <div class="composer">
      <button
        type="button"
        class="icon-button attach"
        title={t("attach")}
        aria-label={t("attach")}
        disabled={disabled}
        onClick={() => fileInput.current?.click()}
      >
        <IconAttach />
      </button>
      <input
        ref={fileInput}
        type="file"
        class="hidden"
        data-testid="file-input"
        onChange={(e) => {
          const input = e.target as HTMLInputElement;
          for (const f of Array.from(input.files ?? [])) void app.sendFile(conversationKey, f);
          input.value = "";
        }}
      />
      <textarea
        ref={area}
        rows={1}
        class="composer-input"
        placeholder={t("composer_placeholder")}
        value={text}
        disabled={disabled}
        data-testid="composer"
        onInput={(e) => {
          const value = (e.target as HTMLTextAreaElement).value;
          setText(value);
          app.draftChanged(conversationKey, value);
        }}
        onKeyDown={(e) => {
          if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
            e.preventDefault();
            send();
          }
        }}
        onPaste={(e) => {
          const files = Array.from(e.clipboardData?.files ?? []);
          if (files.length) {
            e.preventDefault();
            for (const f of files) void app.sendFile(conversationKey, f);
          }
        }}
      />
      <button type="button" class="send-button" onClick={send} disabled={disabled || !text.trim()} data-testid="send">
        {t("send")}
      </button>
    </div>
  );
}

export function ConversationView({ conversation, onBack, onOpenProfile }: { conversation: Conversation; onBack: () => void; onOpenProfile: (id: string) => void }) {
  const app = useApp();
  const state = useAppState();
  const [panel, setPanel] = useState(false);
  const list = useRef<HTMLUListElement>(null);
  const stick = useRef(true);
  const prevHeight = useRef(0);
  const thread = state.threads.get(conversation.key);
  const ref = parseConversationKey(conversation.key);
  const group = conversation.ref.type === "group" ? state.groups.get(conversation.ref.id) : undefined;
  const myRole = group?.members.find((m) => m.employee_id === state.me?.employee_id)?.role ?? group?.role;
  const canModerate = myRole === "owner" || myRole === "admin";

  const items: ThreadItem[] = [];
  if (thread) {
    const notices = [...thread.notices];
    for (const m of thread.messages) {
      while (notices.length && m.seq !== null && notices[0].afterSeq < m.seq) items.push(notices.shift() as NoticeItem);
      items.push(m);
    }
    items.push(...notices);
  }

  useEffect(() => {
    stick.current = true;
    setPanel(false);
  }, [conversation.key]);

  useLayoutEffect(() => {
    const el = list.current;
    if (!el) return;
    if (stick.current) el.scrollTop = el.scrollHeight;
    else if (prevHeight.current && el.scrollHeight > prevHeight.current && el.scrollTop < 40) {
      el.scrollTop += el.scrollHeight - prevHeight.current; // older messages were added above
    }
    prevHeight.current = el.scrollHeight;
  });

  const onScroll = () => {
    const el = list.current;
    if (!el) return;
    stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 60;
    if (el.scrollTop < 40 && thread?.hasMoreBefore && !thread.loadingOlder) void app.loadOlder(conversation.key);
  };

  const peer = conversation.ref.type === "private" ? state.employees.get(conversation.ref.id) : undefined;
  const presence = conversation.ref.type === "private" ? state.presence.get(conversation.ref.id) : undefined;
  const subtitle =
    conversation.ref.type === "group"
      ? group
        ? t("member_count", { n: group.member_count })
        : ""
      : presence?.status === "online"
        ? t("online")
        : presence?.last_seen || presence?.updated_at
          ? t("last_seen", { time: shortTime(presence.last_seen ?? presence.updated_at) })
          : t("offline");
  const disabled = conversation.dismissed || !ref;

  return (
    <section class="conversation-pane" data-testid="conversation-pane" data-key={conversation.key}>
      <header class="pane-head">
        <button type="button" class="icon-button back" onClick={onBack} aria-label={t("back")}>
          <IconBack />
        </button>
        <button
          type="button"
          class="pane-title"
          onClick={() => (conversation.ref.type === "group" ? setPanel(!panel) : onOpenProfile(conversation.ref.id))}
        >
          <span class="pane-name" data-testid="conversation-title">
            {conversation.name}
            {peer?.is_ai_agent && <span class="tag tag-agent">{t("agent_badge")}</span>}
          </span>
          <span class="pane-subtitle">
            {conversation.ref.type === "private" && <PresenceDot online={isOnline(state, conversation.ref.id)} />}
            {subtitle}
          </span>
        </button>
        {conversation.ref.type === "group" && !conversation.dismissed && (
          <button type="button" class="icon-button" onClick={() => setPanel(!panel)} title={t("group_settings")} aria-label={t("group_settings")} data-testid="group-settings">
            <IconMore />
          </button>
        )}
      </header>
      <div class="pane-body">
        <ul class="messages" ref={list} onScroll={onScroll} data-testid="messages">
          {thread?.loadingOlder && <li class="notice">{t("loading")}</li>}
          {thread?.loaded && thread.hasMoreBefore && !thread.loadingOlder && (
            <li class="notice">
              <button type="button" class="link-button" onClick={() => void app.loadOlder(conversation.key)}>
                {t("load_older")}
              </button>
            </li>
          )}
          {(!thread || thread.loading) && <li class="notice">{t("loading")}</li>}
          {thread?.error && <li class="notice error">{thread.error}</li>}
          {items.map((item) =>
            item.kind === "message" ? (
              <MessageRow key={item.id} conversation={conversation} item={item} canModerate={canModerate} />
            ) : (
              <NoticeRow key={item.id} item={item} />
            ),
          )}
          {conversation.dismissed && (
            <li class="notice">{conversation.groupDismissed ? t("group_dismissed") : t("not_member")}</li>
          )}
        </ul>
        {panel && conversation.ref.type === "group" && (
          <GroupPanel groupId={conversation.ref.id} onClose={() => setPanel(false)} onOpenProfile={onOpenProfile} />
        )}
      </div>
      <TypingLine conversation={conversation} />
      <Composer conversationKey={conversation.key} disabled={disabled} />
    </section>
  );
}
