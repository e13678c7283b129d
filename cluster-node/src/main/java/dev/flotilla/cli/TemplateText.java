package dev.flotilla.cli;

import dev.flotilla.api.v1.Template;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;

/**
 * The template commands' output: {@code template ls}'s table, {@code template warm}'s line, and
 * their JSON (an object per template: id, image, imageDigest, cpus, memoryMib, diskMib, bytes,
 * created, lastUsed, clones, node, driver; times RFC 3339 UTC or null).
 */
public final class TemplateText {
  static final String[] COLUMNS = {"ID", "IMAGE", "CPUS", "MEMORY", "DISK", "SIZE", "CLONES", "LAST USED", "NODE"};
  /** What IMAGE shows for a template of the default image (a sandbox created without --image). */
  static final String DEFAULT_IMAGE = "<default>";

  private TemplateText() {}

  public static String table(List<Template> templates, Instant now) {
    List<String[]> rows = new ArrayList<>();
    rows.add(COLUMNS);
    for (Template t : templates) {
      rows.add(new String[] {Names.oneLine(t.getId()), image(t), Integer.toUnsignedString(t.getCpus()),
          mib(t.getMemoryMib()), mib(t.getDiskMib()), ImageText.size(t.getBytes()), Integer.toUnsignedString(t.getClones()),
          t.hasLastUsed() ? SandboxText.age(Names.instant(t.getLastUsed()), now) + " ago" : "-", Names.oneLine(t.getNode())});
    }
    return SandboxText.columns(rows);
  }

  /**
   * {@code ID IMAGE (N vCPU, M MiB): SIZE on NODE}: the id first, so that a script takes the first
   * word; the node because templates are node-local.
   */
  public static String line(Template t) {
    return Names.oneLine(t.getId()) + " " + image(t) + " (" + Integer.toUnsignedString(t.getCpus()) + " vCPU, "
        + mib(t.getMemoryMib()) + "): " + ImageText.size(t.getBytes()) + " on " + Names.oneLine(t.getNode()) + "\n";
  }

  public static String object(Template t) {
    StringBuilder b = new StringBuilder();
    write(b, t, "");
    return b.append('\n').toString();
  }

  public static String array(List<Template> templates) {
    if (templates.isEmpty()) return "[]\n";
    StringBuilder b = new StringBuilder("[\n");
    for (int k = 0; k < templates.size(); k++) {
      b.append("  ");
      write(b, templates.get(k), "  ");
      b.append(k + 1 < templates.size() ? ",\n" : "\n");
    }
    return b.append("]\n").toString();
  }

  private static void write(StringBuilder b, Template t, String indent) {
    String in = indent + "  ";
    b.append("{\n");
    b.append(in).append("\"id\": ").append(SandboxJson.str(t.getId())).append(",\n");
    b.append(in).append("\"image\": ").append(SandboxJson.str(t.getImage())).append(",\n");
    b.append(in).append("\"imageDigest\": ").append(SandboxJson.str(t.getImageDigest())).append(",\n");
    b.append(in).append("\"cpus\": ").append(Integer.toUnsignedString(t.getCpus())).append(",\n");
    b.append(in).append("\"memoryMib\": ").append(Integer.toUnsignedString(t.getMemoryMib())).append(",\n");
    b.append(in).append("\"diskMib\": ").append(Integer.toUnsignedString(t.getDiskMib())).append(",\n");
    b.append(in).append("\"bytes\": ").append(Long.toUnsignedString(t.getBytes())).append(",\n");
    b.append(in).append("\"created\": ").append(t.hasCreated() ? SandboxJson.str(Names.rfc3339(t.getCreated())) : "null")
        .append(",\n");
    b.append(in).append("\"lastUsed\": ").append(t.hasLastUsed() ? SandboxJson.str(Names.rfc3339(t.getLastUsed())) : "null")
        .append(",\n");
    b.append(in).append("\"clones\": ").append(Integer.toUnsignedString(t.getClones())).append(",\n");
    b.append(in).append("\"node\": ").append(SandboxJson.str(t.getNode())).append(",\n");
    b.append(in).append("\"driver\": ").append(SandboxJson.str(t.getDriver())).append('\n');
    b.append(indent).append('}');
  }

  /** The image as people read it: a pinned reference with its digest shortened as `image ls` shows digests. */
  static String image(Template t) {
    String image = t.getImage();
    if (image.isEmpty()) return DEFAULT_IMAGE;
    int at = image.indexOf('@');
    return at < 0 ? Names.oneLine(image) : Names.oneLine(image.substring(0, at)) + "@" + ImageText.shortDigest(image.substring(at + 1));
  }

  private static String mib(int mib) {
    return Integer.toUnsignedString(mib) + " MiB";
  }
}
