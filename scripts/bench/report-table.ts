import Table from 'cli-table3';

export type Align = 'left' | 'right';
export type Cell = string | number;

/** One table of the benchmark's report, rendered for the terminal (cli-table3) and as Markdown (docs/benchmarks.md). */
export class ReportTable {
  readonly rows: Cell[][] = [];

  constructor(
    readonly head: string[],
    readonly align: Align[] = head.map((_, i) => (i === 0 ? 'left' : 'right')),
  ) {}

  push(row: Cell[]): this {
    this.rows.push(row);
    return this;
  }

  /** Plain box drawing, no colours, no lines between rows. */
  toText(): string {
    const table = new Table({
      head: this.head,
      colAligns: this.align,
      style: { head: [], border: [] },
      chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
    });
    for (const row of this.rows) table.push(row);
    return table.toString();
  }

  toMarkdown(): string {
    const escape = (cell: Cell) => String(cell).replaceAll('|', '\\|');
    const lines = [
      `| ${this.head.map(escape).join(' | ')} |`,
      `|${this.align.map((a) => (a === 'right' ? ' ---: ' : ' --- ')).join('|')}|`,
      ...this.rows.map((row) => `| ${row.map(escape).join(' | ')} |`),
    ];
    return lines.join('\n');
  }
}
