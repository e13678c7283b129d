package dev.flotilla.agent.guest.system;

import dev.flotilla.agent.guest.AgentError;
import dev.flotilla.agent.guest.process.TenantRoot;
import dev.flotilla.agent.protocol.v1.FileInfo;
import dev.flotilla.agent.protocol.v1.ListDirRequest;
import dev.flotilla.agent.protocol.v1.ListDirResponse;
import com.google.protobuf.CodedOutputStream;
import java.io.IOException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.SecureDirectoryStream;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * ListDir: a directory's entries depth first, each directory's entries by name, so that the
 * order is the component-wise order of the entries' relative paths and a page can start after
 * any entry ({@code start_after}) without reading the subtrees before it again. Directories are
 * opened through their parent's descriptor without following links (see {@link Confined}); a
 * link is listed, never entered. Bounded: depth, entries per answer (and their bytes, under the
 * frame limit), names read from one directory.
 */
public final class DirLister {

  static final int MAX_DEPTH = 16;
  static final int DEFAULT_ENTRIES = 1000;
  static final int MAX_ENTRIES = 10_000;
  /** Names read from one directory (they are sorted in memory). */
  static final int MAX_NAMES_PER_DIR = 10_000;

  private final TenantRoot root;
  private final int maxBytes;

  /** @param maxBytes most bytes of entries in one answer */
  public DirLister(FileService files, int maxBytes) {
    this.root = files.root();
    this.maxBytes = maxBytes;
  }

  public ListDirResponse list(ListDirRequest r) {
    int depth = Math.max(1, Math.min(r.getDepth(), MAX_DEPTH));
    int max = r.getMaxEntries() == 0 ? DEFAULT_ENTRIES : Math.min(r.getMaxEntries(), MAX_ENTRIES);
    List<String> after = startAfter(r.getStartAfter());
    try (Confined c = Confined.open(root, r.getPath(), true)) {
      try (SecureDirectoryStream<Path> dir = c.openSelf()) {
        Page page = new Page(c.names(), after, depth, max);
        page.walk(dir, new ArrayList<>());
        return ListDirResponse.newBuilder()
            .setPath(c.tenantPath())
            .addAllEntries(page.entries)
            .setTruncated(page.truncated)
            .setIncomplete(page.incomplete)
            .build();
      } catch (IOException e) {
        throw Confined.map("list", c.tenantPath(), e);
      }
    }
  }

  private static List<String> startAfter(String s) {
    List<String> out = new ArrayList<>();
    for (String n : s.split("/")) {
      if (n.isEmpty()) continue;
      if (n.equals(".") || n.equals("..") || n.indexOf('\0') >= 0) {
        throw AgentError.invalid("start_after '" + s.replace('\0', '?') + "' must be an entry path of a previous answer");
      }
      out.add(n);
    }
    return out;
  }

  /** Component-wise order: depth-first listing order with each directory's names sorted. */
  static int compare(List<String> a, List<String> b) {
    for (int i = 0; i < Math.min(a.size(), b.size()); i++) {
      int c = a.get(i).compareTo(b.get(i));
      if (c != 0) return c;
    }
    return Integer.compare(a.size(), b.size());
  }

  private final class Page {
    final List<String> base;
    final List<String> after;
    final int depth;
    final int max;
    final List<FileInfo> entries = new ArrayList<>();
    int bytes;
    boolean truncated;
    boolean incomplete;

    Page(List<String> base, List<String> after, int depth, int max) {
      this.base = base;
      this.after = after;
      this.depth = depth;
      this.max = max;
    }

    /** Lists {@code dir} (at {@code rel} under the listed directory); false once the page is full. */
    boolean walk(SecureDirectoryStream<Path> dir, List<String> rel) throws IOException {
      List<String> names = new ArrayList<>();
      for (Path p : dir) {
        if (names.size() == MAX_NAMES_PER_DIR) {
          incomplete = true;
          break;
        }
        names.add(p.getFileName().toString());
      }
      Collections.sort(names);
      for (String n : names) {
        List<String> child = new ArrayList<>(rel);
        child.add(n);
        // The cursor entry itself too: listed already, but a directory's entries come after it.
        boolean onCursorPath = child.size() <= after.size() && after.subList(0, child.size()).equals(child);
        if (!after.isEmpty() && !onCursorPath && compare(child, after) <= 0) continue; // listed on an earlier page
        Path name = Confined.name(n);
        FileInfo info;
        if (onCursorPath) {
          info = null; // listed on an earlier page; its subtree continues past the cursor
        } else {
          List<String> fromRoot = new ArrayList<>(base);
          fromRoot.addAll(child);
          try {
            info = Confined.info(root, dir, name, n, String.join("/", child), fromRoot);
          } catch (NoSuchFileException gone) {
            continue;
          }
          int size = CodedOutputStream.computeMessageSize(1, info);
          if (entries.size() == max || bytes + size > maxBytes) {
            truncated = true;
            return false;
          }
          entries.add(info);
          bytes += size;
        }
        boolean isDir = info != null ? info.getType() == FileInfo.Type.DIR : true;
        if (isDir && child.size() < depth) {
          SecureDirectoryStream<Path> sub;
          try {
            sub = Confined.child(dir, name, String.join("/", child));
          } catch (IOException changed) {
            continue; // gone, or no longer a directory: listed as it was
          }
          try (sub) {
            if (!walk(sub, child)) return false;
          }
        }
      }
      return true;
    }
  }
}
