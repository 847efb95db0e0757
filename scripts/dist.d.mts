export declare const ROOT: string;
export declare function distIsFresh(): boolean;
