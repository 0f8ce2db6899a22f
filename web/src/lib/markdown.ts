/**
 * A small Markdown renderer for agent text: everything is escaped first, so no HTML from an agent
 * reaches the page; then fenced code, headings, lists, quotes, paragraphs, inline code, bold,
 * italic and http(s) links. An unclosed fence (text still streaming) renders as code so far.
 */
const escapeHtml = (text: string) =>
  text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;")

const inline = (text: string) => {
  const codes: Array<string> = []
  let out = escapeHtml(text).replace(/`([^`]+)`/g, (_, code: string) => {
    codes.push(`<code>${code}</code>`)
    return `\uE000${codes.length - 1}\uE001`
  })
  out = out
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>")
    .replace(
      /\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g,
      (_, label: string, href: string) => `<a href="${href}" target="_blank" rel="noopener noreferrer">${label}</a>`
    )
  return out.replace(/\uE000(\d+)\uE001/g, (_, i: string) => codes[Number(i)] ?? "")
}

export const renderMarkdown = (source: string): string => {
  const lines = source.replaceAll("\r\n", "\n").split("\n")
  const html: Array<string> = []
  let paragraph: Array<string> = []
  let list: { ordered: boolean; items: Array<string> } | undefined
  const flush = () => {
    if (paragraph.length > 0) html.push(`<p>${paragraph.map(inline).join("<br>")}</p>`)
    paragraph = []
    if (list !== undefined) {
      const tag = list.ordered ? "ol" : "ul"
      html.push(`<${tag}>${list.items.map((item) => `<li>${inline(item)}</li>`).join("")}</${tag}>`)
      list = undefined
    }
  }
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? ""
    const fence = /^```(\S*)/.exec(line)
    if (fence) {
      flush()
      const code: Array<string> = []
      while (++i < lines.length && !/^```/.test(lines[i] ?? "")) code.push(lines[i] ?? "")
      html.push(`<pre><code>${escapeHtml(code.join("\n"))}</code></pre>`)
      continue
    }
    const heading = /^(#{1,4})\s+(.*)$/.exec(line)
    const bullet = /^\s*[-*+]\s+(.*)$/.exec(line)
    const numbered = /^\s*\d+[.)]\s+(.*)$/.exec(line)
    if (heading) {
      flush()
      const level = Math.min(6, (heading[1]?.length ?? 1) + 2)
      html.push(`<h${level}>${inline(heading[2] ?? "")}</h${level}>`)
    } else if (bullet || numbered) {
      if (paragraph.length > 0) flush()
      const ordered = numbered !== null
      if (list !== undefined && list.ordered !== ordered) flush()
      list ??= { ordered, items: [] }
      list.items.push((bullet ?? numbered)?.[1] ?? "")
    } else if (/^>\s?/.test(line)) {
      flush()
      html.push(`<blockquote>${inline(line.replace(/^>\s?/, ""))}</blockquote>`)
    } else if (line.trim() === "") {
      flush()
    } else {
      if (list !== undefined) flush()
      paragraph.push(line)
    }
  }
  flush()
  return html.join("")
}
