// The shape check_grafana.sh holds deploy/grafana/dashboards/yolod.json to: Grafana's published
// dashboard type (`Dashboard` from @grafana/schema, the version pinned in package.json), with
// each panel's `options` and `fieldConfig.defaults.custom` typed by the published schema of its
// panel type, every target a Prometheus query and every annotation a Prometheus annotation.
//
// check_grafana.mjs writes the JSON into a .ts file as an object literal assigned to
// `YolodDashboard` and runs tsc on it. A literal, not `import ... from "yolod.json"`: an imported
// JSON module's strings widen to `string` (so "query" would not match VariableType) and escape
// TypeScript's excess-property check, which is what catches a misspelt or unknown key here.
import type {
  DataQuery,
  DataSourceRef,
  Dashboard,
  FieldConfig,
  FieldConfigSource,
  Panel,
  RowPanel,
} from '@grafana/schema';
import type * as BarGauge from '@grafana/schema/dist/esm/raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen';
import type * as Stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type * as StateTimeline from '@grafana/schema/dist/esm/raw/composable/statetimeline/panelcfg/x/StateTimelinePanelCfg_types.gen';
import type * as TimeSeries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

// Grafana's TypeScript types spell choices as string enums (GraphThresholdsStyleMode.Area);
// the JSON spells their values ("area"). This maps every string enum, at any depth, to the union
// of its values and leaves everything else as it is.
export type AsJson<T> = T extends string
  ? `${T}`
  : T extends ReadonlyArray<infer U>
    ? Array<AsJson<U>>
    : T extends object
      ? { [K in keyof T]: AsJson<T[K]> }
      : T;

// The only data source the dashboard may use: the provisioned Prometheus.
export interface PrometheusRef extends DataSourceRef {
  type: 'prometheus';
  uid: 'prometheus';
}

// A Prometheus query as Grafana 11 stores it (the fields of @grafana/prometheus' PromQuery that
// a dashboard file holds).
export interface PromQuery extends DataQuery {
  datasource: PrometheusRef;
  refId: string;
  expr: string;
  legendFormat?: string;
  range?: boolean;
  instant?: boolean;
  exemplar?: boolean;
  format?: 'time_series' | 'table' | 'heatmap';
  interval?: string;
  intervalFactor?: number;
  editorMode?: 'code' | 'builder';
}

type PanelBase = Omit<Panel, 'type' | 'datasource' | 'targets' | 'options' | 'fieldConfig'> & {
  datasource: PrometheusRef;
  targets: PromQuery[];
  title: string;
};

type TypedPanel<TType extends string, TOptions, TCustom> = PanelBase & {
  type: TType;
  options: TOptions;
  fieldConfig: Omit<FieldConfigSource, 'defaults'> & {
    defaults: Omit<FieldConfig, 'custom'> & { custom?: TCustom };
  };
};

// The panel types the dashboard uses; another type is an error until it is added here.
export type YolodPanel =
  | TypedPanel<'timeseries', TimeSeries.Options, TimeSeries.FieldConfig>
  | TypedPanel<'state-timeline', StateTimeline.Options, StateTimeline.FieldConfig>
  | TypedPanel<'stat', Stat.Options, Record<string, never>>
  | TypedPanel<'bargauge', BarGauge.Options, Record<string, never>>;

export type YolodRow = Omit<RowPanel, 'datasource' | 'panels'> & {
  datasource: PrometheusRef;
  panels: YolodPanel[];
};

// A Prometheus annotation: the query in `target` (Grafana 11 moves a top-level `expr` there),
// and how events are titled and tagged from the series' labels.
export interface PromAnnotation {
  datasource: PrometheusRef;
  enable: boolean;
  hide?: boolean;
  iconColor: string;
  name: string;
  target: PromQuery;
  titleFormat?: string;
  textFormat?: string;
  tagKeys?: string;
  useValueForTime?: boolean;
  step?: string;
}

export type YolodDashboard = AsJson<
  Omit<Dashboard, 'panels' | 'annotations' | 'uid' | 'title' | 'schemaVersion'> & {
    panels: Array<YolodRow | YolodPanel>;
    annotations: { list: PromAnnotation[] };
    uid: 'yolod';
    title: 'yolod';
    schemaVersion: 39;
  }
>;
