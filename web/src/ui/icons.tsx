// Line icons as inline SVG elements (no icon font, no emoji font needed, nothing from elsewhere).
import type { JSX } from "preact";

function Svg({ children, size = 20 }: { children: JSX.Element | JSX.Element[]; size?: number }) {
  return (
    <svg class="icon" width={size} height={size} viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">
      {children}
    </svg>
  );
}

export const IconChat = () => (
  <Svg>
    <path d="M4 5h16v11H9l-5 4z" />
  </Svg>
);
export const IconPeople = () => (
  <Svg>
    <circle cx="9" cy="8" r="3.2" />
    <path d="M3 19c0-3.3 2.7-5.5 6-5.5s6 2.2 6 5.5" />
    <path d="M16 5.2a3 3 0 0 1 0 5.6M18 13.8c1.9.7 3 2.5 3 5.2" />
  </Svg>
);
export const IconBot = () => (
  <Svg>
    <rect x="4" y="8" width="16" height="11" rx="3" />
    <path d="M12 4v4M9 13h.01M15 13h.01M9.5 16h5" />
  </Svg>
);
export const IconSignOut = () => (
  <Svg>
    <path d="M14 4h5v16h-5M10 8l-4 4 4 4M6 12h10" />
  </Svg>
);
export const IconAttach = () => (
  <Svg size={22}>
    <path d="M20 11.5l-7.8 7.8a5 5 0 0 1-7-7L13 4.5a3.3 3.3 0 0 1 4.7 4.7l-7.6 7.6a1.7 1.7 0 0 1-2.4-2.4l7-7" />
  </Svg>
);
export const IconPlus = () => (
  <Svg size={18}>
    <path d="M12 5v14M5 12h14" />
  </Svg>
);
export const IconMore = () => (
  <Svg>
    <path d="M5 12h.01M12 12h.01M19 12h.01" />
  </Svg>
);
export const IconBack = () => (
  <Svg size={24}>
    <path d="M15 5l-7 7 7 7" />
  </Svg>
);
export const IconFile = () => (
  <Svg size={30}>
    <path d="M6 3h8l4 4v14H6z" />
    <path d="M14 3v4h4M9 12h6M9 16h6" />
  </Svg>
);
