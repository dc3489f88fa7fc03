// Content helpers shared by the UI and Node users: never HTML, only text and checked URLs.
import type { Content } from "./types";

/** `url` if it is an absolute http(s) URL (or a same-origin path), else null. */
export function safeHttpUrl(url: unknown): string | null {
  if (typeof url !== "string" || url.length > 4096) return null;
  if (url.startsWith("/") && !url.startsWith("//")) return url;
  try {
    const u = new URL(url);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch {
    return null;
  }
}

/** A one-line text for conversation lists and notifications. */
export function contentSummary(content: Content | null | undefined, labels = { image: "[图片]", file: "[文件]" }): string {
  if (content === null || content === undefined) return "";
  if (typeof content === "string") return content;
  switch (content.type) {
    case "text":
      return content.text;
    case "image":
      return labels.image;
    case "file":
      return `${labels.file} ${content.name ?? ""}`.trim();
    default:
      return "";
  }
}
