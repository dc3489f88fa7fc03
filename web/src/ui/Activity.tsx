// What agents (and people) are doing in a conversation (docs/protocol.md §13): a streamed
// message still being written and its Stop button, a task's state and its cancel button, the
// typing / "thinking" line. All text is rendered as text.
import { FINAL_TASK_STATES, type TaskState } from "../client";
import { type MessageKey, t } from "../i18n";
import type { Conversation, MessageItem, Store, TaskInfo, TypingInfo } from "../state/store";
import { useApp, useAppState } from "./common";

const TASK_LABELS: Record<TaskState, MessageKey> = {
  submitted: "task_submitted",
  working: "task_working",
  "input-required": "task_input_required",
  completed: "task_completed",
  failed: "task_failed",
  canceled: "task_canceled",
};

/** "生成中…" with a Stop button while a stream is open; "已停止生成" once it was stopped. */
export function StreamMeta({ item, canStop }: { item: MessageItem; canStop: boolean }) {
  const app = useApp();
  if (item.streaming) {
    return (
      <>
        <span class="status streaming" data-testid="streaming">
          {t("streaming")}
        </span>
        {canStop && (
          <button type="button" class="link-button stop-stream" onClick={() => void app.stopStream(item)} data-testid="stop-stream">
            {t("stop_stream")}
          </button>
        )}
      </>
    );
  }
  if (item.canceled) {
    return (
      <span class="status stream-stopped" data-testid="stream-stopped">
        {t("stream_stopped")}
      </span>
    );
  }
  return null;
}

/** The state of my task (a message of mine to an agent) and, while it is open, its cancel button. */
export function TaskMeta({ item, task }: { item: MessageItem; task: TaskInfo | undefined }) {
  const app = useApp();
  if (!item.msgId || item.status !== "sent") return null;
  const state: TaskState = task?.state ?? "submitted";
  const open = !FINAL_TASK_STATES.includes(state);
  const label = t(TASK_LABELS[state] ?? "task_submitted");
  return (
    <>
      <span class={`task-state task-${state}`} data-testid="task-state" data-state={state}>
        {task?.statusText ? t("task_with_status", { state: label, status: task.statusText }) : label}
      </span>
      {open && (
        <button type="button" class="link-button" onClick={() => void app.cancelTask(item.msgId as string)} data-testid="cancel-task">
          {t("cancel_task")}
        </button>
      )}
    </>
  );
}

/** One line for who is typing (or an agent's status) in a conversation, or "" for nobody. */
export function typingText(store: Store, c: Conversation, who: TypingInfo[]): string {
  if (who.length === 0) return "";
  if (c.ref.type === "private") return who[0].statusText || t("typing_peer");
  if (who.length === 1) {
    const [x] = who;
    const name = store.nameOf(x.employeeId);
    return x.statusText ? t("typing_status", { name, status: x.statusText }) : t("typing_named", { name });
  }
  return t("typing_named", { name: who.map((x) => store.nameOf(x.employeeId)).join("、") });
}

/** The typing / thinking line under a conversation's messages (nothing when nobody is). */
export function TypingLine({ conversation }: { conversation: Conversation }) {
  const app = useApp();
  useAppState();
  const text = typingText(app.store, conversation, app.store.typingIn(conversation.key));
  if (!text) return null;
  return (
    <div class="typing-line" data-testid="typing" aria-live="polite">
      <span class="typing-dots" aria-hidden="true">
        <span />
        <span />
        <span />
      </span>
      {text}
    </div>
  );
}
