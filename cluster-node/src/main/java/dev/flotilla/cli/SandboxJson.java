package dev.flotilla.cli;

import com.google.protobuf.Timestamp;
import dev.flotilla.api.v1.HistoryEvent;
import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxSpec;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The JSON shape of {@code get -o json} and {@code ls -o json}: the Sandbox message in lowerCamel
 * names, with phase and restart policy as names, the incarnation as a number (protobuf's JSON
 * mapping would make a uint64 a string), times in RFC 3339 UTC, and the labels also at the top
 * level. Written by hand to keep JSON libraries out of the CLI's start-up.
 */
public final class SandboxJson {
  private SandboxJson() {}

  public static String object(Sandbox s) {
    StringBuilder b = new StringBuilder();
    writeSandbox(b, s, "");
    return b.append('\n').toString();
  }

  public static String array(List<Sandbox> sandboxes) {
    if (sandboxes.isEmpty()) return "[]\n";
    StringBuilder b = new StringBuilder("[\n");
    for (int i = 0; i < sandboxes.size(); i++) {
      b.append("  ");
      writeSandbox(b, sandboxes.get(i), "  ");
      b.append(i + 1 < sandboxes.size() ? ",\n" : "\n");
    }
    return b.append("]\n").toString();
  }

  /** {@code events -o json}: an array of the sandbox's history entries, oldest first. */
  public static String events(List<HistoryEvent> events) {
    if (events.isEmpty()) return "[]\n";
    StringBuilder b = new StringBuilder("[\n");
    for (int i = 0; i < events.size(); i++) {
      HistoryEvent e = events.get(i);
      b.append("  {\n");
      field(b, "    ", "sequence").append(e.getSequence()).append(",\n");
      field(b, "    ", "at").append(time(e.hasAt(), e.getAt())).append(",\n");
      field(b, "    ", "kind").append(str(e.getKind())).append(",\n");
      field(b, "    ", "incarnation").append(e.getIncarnation()).append(",\n");
      field(b, "    ", "node").append(str(e.getNode())).append(",\n");
      field(b, "    ", "description").append(str(e.getDescription())).append("\n");
      b.append(i + 1 < events.size() ? "  },\n" : "  }\n");
    }
    return b.append("]\n").toString();
  }

  private static void writeSandbox(StringBuilder b, Sandbox s, String indent) {
    SandboxSpec spec = s.getSpec();
    String in = indent + "  ";
    b.append("{\n");
    field(b, in, "id").append(str(s.getId())).append(",\n");
    field(b, in, "tenant").append(str(s.getTenant())).append(",\n");
    field(b, in, "phase").append(str(Names.phase(s))).append(",\n");
    field(b, in, "incarnation").append(Long.toUnsignedString(s.getIncarnation())).append(",\n");
    field(b, in, "node").append(str(s.getNode())).append(",\n");
    field(b, in, "labels");
    labels(b, spec.getLabelsMap(), in);
    b.append(",\n");
    field(b, in, "createdAt").append(time(s.hasCreatedAt(), s.getCreatedAt())).append(",\n");
    field(b, in, "updatedAt").append(time(s.hasUpdatedAt(), s.getUpdatedAt())).append(",\n");
    field(b, in, "statusMessage").append(str(s.getStatusMessage())).append(",\n");
    field(b, in, "restartCount").append(Integer.toUnsignedString(s.getRestartCount())).append(",\n");
    field(b, in, "desiredRunning").append(s.getDesiredRunning()).append(",\n");
    field(b, in, "spec").append("{\n");
    String in2 = in + "  ";
    field(b, in2, "driver").append(str(spec.getDriver())).append(",\n");
    field(b, in2, "vcpus").append(spec.getVcpus()).append(",\n");
    field(b, in2, "memoryMib").append(spec.getMemoryMib()).append(",\n");
    field(b, in2, "diskMib").append(spec.getDiskMib()).append(",\n");
    field(b, in2, "image").append(str(spec.getImage())).append(",\n");
    field(b, in2, "command").append(spec.getCommandList().stream().map(SandboxJson::str)
        .collect(java.util.stream.Collectors.joining(", ", "[", "]"))).append(",\n");
    field(b, in2, "restartPolicy").append(str(Names.restartPolicy(spec))).append(",\n");
    field(b, in2, "labels");
    labels(b, spec.getLabelsMap(), in2);
    b.append('\n').append(in).append("}\n");
    b.append(indent).append('}');
  }

  private static StringBuilder field(StringBuilder b, String indent, String name) {
    return b.append(indent).append('"').append(name).append("\": ");
  }

  private static void labels(StringBuilder b, Map<String, String> labels, String indent) {
    if (labels.isEmpty()) {
      b.append("{}");
      return;
    }
    b.append("{\n");
    int i = 0;
    for (Map.Entry<String, String> e : new TreeMap<>(labels).entrySet()) {
      b.append(indent).append("  ").append(str(e.getKey())).append(": ").append(str(e.getValue()));
      b.append(++i < labels.size() ? ",\n" : "\n");
    }
    b.append(indent).append('}');
  }

  private static String time(boolean present, Timestamp t) {
    return present ? str(Names.rfc3339(t)) : "null";
  }

  /** A JSON string literal. */
  static String str(String s) {
    StringBuilder b = new StringBuilder(s.length() + 2).append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"' -> b.append("\\\"");
        case '\\' -> b.append("\\\\");
        case '\n' -> b.append("\\n");
        case '\r' -> b.append("\\r");
        case '\t' -> b.append("\\t");
        case '\b' -> b.append("\\b");
        case '\f' -> b.append("\\f");
        default -> {
          if (c < 0x20 || c == '\u2028' || c == '\u2029') {
            b.append(String.format("\\u%04x", (int) c));
          } else {
            b.append(c);
          }
        }
      }
    }
    return b.append('"').toString();
  }
}
