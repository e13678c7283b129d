package dev.flotilla.vm.net;

import java.io.IOException;
import java.net.InetAddress;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import org.xbill.DNS.AAAARecord;
import org.xbill.DNS.ARecord;
import org.xbill.DNS.CNAMERecord;
import org.xbill.DNS.DClass;
import org.xbill.DNS.Flags;
import org.xbill.DNS.Message;
import org.xbill.DNS.Name;
import org.xbill.DNS.Opcode;
import org.xbill.DNS.Rcode;
import org.xbill.DNS.Record;
import org.xbill.DNS.Section;
import org.xbill.DNS.Type;

/**
 * The DNS messages {@link DnsProxy} reads: a sandbox's queries and the node's upstream answers,
 * parsed by dnsjava (which bounds names, labels and compression pointers and throws on anything
 * malformed) and then checked here. Nothing in either is trusted: a query is forwarded only as
 * one plain question, and an answer grants only the addresses reached from that question's own
 * name through the answer section's CNAME chain (so records an answer adds about other names,
 * in any section, are ignored).
 */
final class DnsMessages {
  /** CNAME hops followed from the question's name; more is a loop or an abuse. */
  static final int MAX_CNAME_HOPS = 8;
  /** Addresses taken from one answer; the rest are not granted. */
  static final int MAX_ADDRESSES = 64;

  private DnsMessages() {}

  /** A query that may be forwarded. {@code name} is lower case without the final dot. */
  record Query(Message message, String name, int type) {
    int id() {
      return message.getHeader().getID();
    }
  }

  /** A message that is answered with {@code rcode} instead of being forwarded. */
  static final class Rejected extends Exception {
    final int rcode;
    final Message query; // null when not even the header parsed

    Rejected(int rcode, Message query, String why) {
      super(why, null, false, false);
      this.rcode = rcode;
      this.query = query;
    }
  }

  /**
   * What an upstream answer grants.
   *
   * @param addresses A/AAAA of the question's name, CNAMEs followed; empty unless NOERROR and complete
   * @param ttlSeconds the smallest TTL along the chain (unbounded here; {@link NameGrants} bounds it)
   */
  record Answer(int rcode, boolean truncated, List<InetAddress> addresses, long ttlSeconds) {}

  /**
   * A sandbox's query: not a response, opcode QUERY, one question of class IN, no answer or
   * authority records, at most an OPT record beside it, no zone transfer.
   *
   * @throws Rejected with the rcode to answer (FORMERR, NOTIMP, REFUSED), or with no query if
   *     not even the header could be read (then nothing is answered)
   */
  static Query parseQuery(byte[] wire) throws Rejected {
    Message m;
    try {
      m = new Message(wire);
    } catch (IOException | RuntimeException e) {
      throw new Rejected(Rcode.FORMERR, headerOnly(wire), "unparsable query: " + e.getMessage());
    }
    var h = m.getHeader();
    if (h.getFlag(Flags.QR)) throw new Rejected(Rcode.FORMERR, null, "a response, not a query");
    if (h.getOpcode() != Opcode.QUERY) throw new Rejected(Rcode.NOTIMP, m, "opcode " + h.getOpcode());
    if (h.getCount(Section.QUESTION) != 1) throw new Rejected(Rcode.FORMERR, m, h.getCount(Section.QUESTION) + " questions");
    // dnsjava stops reading at the end of a message flagged truncated: its header may count a
    // question that is not there
    if (m.getSection(Section.QUESTION).size() != 1) throw new Rejected(Rcode.FORMERR, m, "a question counted but missing");
    if (h.getCount(Section.ANSWER) != 0 || h.getCount(Section.AUTHORITY) != 0) throw new Rejected(Rcode.FORMERR, m, "records in a query");
    List<Record> additional = m.getSection(Section.ADDITIONAL);
    if (additional.size() > 1 || (additional.size() == 1 && additional.get(0).getType() != Type.OPT)) {
      throw new Rejected(Rcode.REFUSED, m, "additional records other than one OPT");
    }
    Record q = m.getQuestion();
    if (q.getDClass() != DClass.IN) throw new Rejected(Rcode.REFUSED, m, "class " + q.getDClass());
    if (q.getType() == Type.AXFR || q.getType() == Type.IXFR) throw new Rejected(Rcode.REFUSED, m, "zone transfer");
    return new Query(m, text(q.getName()), q.getType());
  }

  /** The query as it goes upstream: re-encoded from what was parsed, under the node's own id. */
  static byte[] upstream(Query q, int id) {
    Message m = q.message().clone();
    m.getHeader().setID(id);
    return m.toWire();
  }

  /**
   * The upstream answer to {@code q} sent as {@code id}, and what it grants.
   *
   * @throws IOException if it is not an answer to that question under that id (dropped, as a spoof or a mix-up)
   */
  static Answer parseAnswer(Query q, int id, byte[] wire) throws IOException {
    Message m;
    try {
      m = new Message(wire);
    } catch (RuntimeException e) {
      throw new IOException("unparsable answer: " + e.getMessage(), e);
    }
    var h = m.getHeader();
    if (!h.getFlag(Flags.QR) || h.getID() != id || h.getOpcode() != Opcode.QUERY) throw new IOException("not the answer to query " + id);
    Record question = m.getQuestion();
    Record asked = q.message().getQuestion();
    if (h.getCount(Section.QUESTION) != 1 || question == null || !question.getName().equals(asked.getName())
        || question.getType() != asked.getType() || question.getDClass() != asked.getDClass()) {
      throw new IOException("the answer's question is not the query's");
    }
    boolean truncated = h.getFlag(Flags.TC);
    if (m.getRcode() != Rcode.NOERROR || truncated) return new Answer(m.getRcode(), truncated, List.of(), 0);
    List<Record> records = m.getSection(Section.ANSWER);
    List<InetAddress> out = new ArrayList<>();
    long ttl = Long.MAX_VALUE;
    Name current = asked.getName();
    Set<Name> seen = new HashSet<>();
    for (int hop = 0; hop <= MAX_CNAME_HOPS && seen.add(current); hop++) {
      Name next = null;
      for (Record r : records) {
        if (r.getDClass() != DClass.IN || !r.getName().equals(current)) continue;
        if (r instanceof ARecord a && out.size() < MAX_ADDRESSES) {
          if (!out.contains(a.getAddress())) out.add(a.getAddress());
          ttl = Math.min(ttl, r.getTTL());
        } else if (r instanceof AAAARecord a && out.size() < MAX_ADDRESSES) {
          if (!out.contains(a.getAddress())) out.add(a.getAddress());
          ttl = Math.min(ttl, r.getTTL());
        } else if (r instanceof CNAMERecord c && next == null) {
          next = c.getTarget();
          ttl = Math.min(ttl, r.getTTL());
        }
      }
      if (next == null) break;
      current = next;
    }
    return new Answer(Rcode.NOERROR, false, List.copyOf(out), out.isEmpty() ? 0 : ttl);
  }

  /** An answer of our own: {@code rcode}, the question echoed when there is one. */
  static byte[] error(Message query, int rcode) {
    Message r = new Message(query.getHeader().getID());
    r.getHeader().setFlag(Flags.QR);
    r.getHeader().setOpcode(query.getHeader().getOpcode());
    if (query.getHeader().getFlag(Flags.RD)) r.getHeader().setFlag(Flags.RD);
    r.getHeader().setFlag(Flags.RA);
    r.getHeader().setRcode(rcode);
    Record q = query.getQuestion();
    if (q != null && query.getHeader().getCount(Section.QUESTION) == 1) r.addRecord(q, Section.QUESTION);
    return r.toWire();
  }

  /** {@code wire} with its id replaced (the upstream answer goes back under the sandbox's id). */
  static byte[] withId(byte[] wire, int id) {
    byte[] b = wire.clone();
    b[0] = (byte) (id >>> 8);
    b[1] = (byte) id;
    return b;
  }

  /** A lower-case name without the final dot, as {@link EgressPolicy.Host} holds it. */
  static String text(Name n) {
    return n.toString(true).toLowerCase(Locale.ROOT);
  }

  private static Message headerOnly(byte[] wire) {
    if (wire.length < 12 || (wire[2] & 0x80) != 0) return null; // no header, or a response: never answered
    Message m = new Message(((wire[0] & 0xff) << 8) | (wire[1] & 0xff));
    m.getHeader().setOpcode((wire[2] >>> 3) & 0xf);
    if ((wire[2] & 1) != 0) m.getHeader().setFlag(Flags.RD);
    return m;
  }
}
