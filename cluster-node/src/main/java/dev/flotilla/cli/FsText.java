package dev.flotilla.cli;

import dev.flotilla.api.v1.FileEvent;
import dev.flotilla.api.v1.FileInfo;
import dev.flotilla.api.v1.FileType;
import java.util.List;

/**
 * How {@code flotilla fs} prints a sandbox's files: names one per line, {@code -l} lines, JSON.
 * Names come from the sandbox (its tenant wrote them): control characters are escaped so one name
 * cannot forge another line.
 */
final class FsText {
  private FsText() {}

  /** {@code ls}: the path, "/" after a directory, " -> target" after a link. */
  static String name(FileInfo f) {
    String s = Names.oneLine(f.getPath());
    if (f.getType() == FileType.FILE_TYPE_DIR && !s.endsWith("/")) s += "/";
    if (f.getType() == FileType.FILE_TYPE_SYMLINK) s += " -> " + Names.oneLine(f.getSymlinkTarget());
    return s + "\n";
  }

  /** {@code ls -l} and {@code stat}: type and mode as ls shows them, size, modification time (UTC), path. */
  static String longLine(FileInfo f) {
    return String.format("%s%s %12d %s %s", typeChar(f.getType()), modeString(f.getMode()), f.getSize(),
        f.hasModified() ? Names.rfc3339(f.getModified()) : "-", name(f));
  }

  static String typeWord(FileType t) {
    return switch (t) {
      case FILE_TYPE_FILE -> "file";
      case FILE_TYPE_DIR -> "dir";
      case FILE_TYPE_SYMLINK -> "symlink";
      case FILE_TYPE_OTHER -> "other";
      default -> "unknown";
    };
  }

  private static char typeChar(FileType t) {
    return switch (t) {
      case FILE_TYPE_DIR -> 'd';
      case FILE_TYPE_SYMLINK -> 'l';
      case FILE_TYPE_OTHER -> '?';
      default -> '-';
    };
  }

  static String modeString(int mode) {
    StringBuilder b = new StringBuilder(9);
    String rwx = "rwx";
    for (int i = 8; i >= 0; i--) b.append((mode & (1 << i)) != 0 ? rwx.charAt(2 - i % 3) : '-');
    return b.toString();
  }

  /** {@code watch}: "created PATH", "modified PATH", "deleted PATH", or "lost N events". */
  static String eventLine(FileEvent e) {
    return switch (e.getKind()) {
      case FILE_CREATED -> "created " + Names.oneLine(e.getPath()) + "\n";
      case FILE_MODIFIED -> "modified " + Names.oneLine(e.getPath()) + "\n";
      case FILE_DELETED -> "deleted " + Names.oneLine(e.getPath()) + "\n";
      case FILE_EVENTS_LOST -> "lost " + (e.getDropped() == 0 ? "some" : Long.toUnsignedString(e.getDropped()))
          + " events\n";
      default -> "unknown " + Names.oneLine(e.getPath()) + "\n";
    };
  }

  /** {@code -o json}: an array of {name, path, type, size, mode, modified, symlinkTarget}; mode in octal as a string. */
  static String array(List<FileInfo> entries) {
    if (entries.isEmpty()) return "[]\n";
    StringBuilder b = new StringBuilder("[\n");
    for (int i = 0; i < entries.size(); i++) {
      b.append("  ").append(object(entries.get(i)));
      b.append(i + 1 < entries.size() ? ",\n" : "\n");
    }
    return b.append("]\n").toString();
  }

  static String object(FileInfo f) {
    return "{\"name\": " + SandboxJson.str(f.getName())
        + ", \"path\": " + SandboxJson.str(f.getPath())
        + ", \"type\": " + SandboxJson.str(typeWord(f.getType()))
        + ", \"size\": " + Long.toUnsignedString(f.getSize())
        + ", \"mode\": " + SandboxJson.str(String.format("%04o", f.getMode()))
        + ", \"modified\": " + (f.hasModified() ? SandboxJson.str(Names.rfc3339(f.getModified())) : "null")
        + ", \"symlinkTarget\": " + SandboxJson.str(f.getSymlinkTarget()) + "}";
  }
}
